#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "tools/parley-bench/load_client.h"

namespace parley::bench {

// Server processes whose CPU time and memory a run reports, by role ("edge", ...).
using WatchedPids = std::vector<std::pair<std::string, pid_t>>;

// Parses "edge:123,inference:456".
absl::StatusOr<WatchedPids> ParsePids(const std::string& text);

// Stream workload (latency with C clients, or saturation when the server is
// unpaced): connect every client, run the turns, report latencies, throughput,
// and the watched processes' CPU seconds per 1,000 tokens delivered.
boost::json::object RunStream(const ClientOptions& options, const WatchedPids& pids);

// Streams sustained: runs the stream workload at each concurrency in `steps`
// and stops at the first that loses, repeats or reorders a token, fails a
// turn, stalls a stream for more than `max_stall`, or has TTFT p99 above
// `max_ttft_p99`. Reports the last concurrency that passed.
boost::json::object RunSustain(ClientOptions options, const std::vector<int64_t>& steps,
                               absl::Duration max_stall, absl::Duration max_ttft_p99,
                               const WatchedPids& pids);

// Idle connections: open them all, stay idle for `idle`, and report the
// watched processes' RSS growth per connection and CPU use while idle, then
// check every connection still answers a ping.
boost::json::object RunIdle(const ClientOptions& options, absl::Duration idle,
                            const WatchedPids& pids);

// Human-readable summary lines of a result object.
std::string FormatSummary(const boost::json::object& result);

}  // namespace parley::bench
