#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "tools/parley-bench/stats.h"

namespace parley::bench {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path = "/ws/chat";  // may carry a query string
  int64_t connections = 1;
  // Connections are spread over 127.0.0.1 .. 127.0.0.N as source addresses, so
  // that more than one address's ephemeral port range can be used.
  int source_addresses = 1;
  int threads = 2;
  int connect_parallelism = 256;  // handshakes in flight while connecting
  // Stream workload: each connection runs `turns` turns back to back, or keeps
  // starting turns until `duration` has passed when that is set.
  int64_t turns = 1;
  absl::Duration duration = absl::ZeroDuration();
  // First turns are spread evenly over this long, so that a thousand streams
  // do not all start in the same millisecond.
  absl::Duration ramp = absl::Seconds(1);
  absl::Duration turn_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(15);  // TCP connect plus WebSocket handshake
  bool same_conversation = true;  // later turns of a connection continue its conversation
  std::string content = "Tell me about streaming chat backends.";
  std::string model;  // empty: the server's default
};

// What the client saw, summed over all connections. Times are measured on the
// client the way vLLM's benchmark_serving does: time to first token from the
// moment the request is handed to the socket, inter-token gaps pooled over all
// streams, TPOT per reply = (latency - TTFT) / (tokens - 1).
struct ClientReport {
  int64_t connections_attempted = 0;
  int64_t connections_established = 0;
  int64_t connect_failures = 0;
  int64_t disconnects = 0;  // established connections the server dropped
  int64_t turns_started = 0;
  int64_t turns_completed = 0;
  int64_t turns_failed = 0;  // error frame, disconnect or timeout
  int64_t turn_timeouts = 0;
  int64_t error_frames = 0;
  int64_t protocol_errors = 0;  // unparsable or unexpected frames
  // The engine's tokens (each completed reply's usage.completionTokens; a failed reply counts
  // its stream_token frames), so merged deltas neither inflate nor deflate a figure.
  int64_t tokens = 0;
  // stream_token frames received.
  int64_t token_frames = 0;
  int64_t lost_seqs = 0;
  int64_t repeated_seqs = 0;
  int64_t out_of_order_seqs = 0;
  int64_t last_seq_mismatches = 0;  // stream_complete.lastSeq differs from the highest seq seen
  int64_t faulty_messages = 0;      // replies with any of the four faults above
  int64_t pongs = 0;
  double duration_s = 0;  // first request sent to last reply complete
  double tokens_per_second = 0;
  double turns_per_second = 0;
  Distribution ttft_ms;
  Distribution itl_ms;
  Distribution tpot_ms;
  Distribution e2e_ms;

  boost::json::object ToJson() const;
};

// A load generator speaking Parley's native WebSocket protocol: one
// io_context run by a few threads, a strand and a few hundred bytes of state
// per connection. The phases are driven from one controlling thread.
class LoadClient {
 public:
  explicit LoadClient(ClientOptions options);
  ~LoadClient();
  LoadClient(const LoadClient&) = delete;
  LoadClient& operator=(const LoadClient&) = delete;

  // Opens every connection; returns once each has succeeded or failed.
  void Connect();
  // Runs the stream workload on every established connection until done.
  void RunTurns();
  // Sends `ping` on every open connection and waits for the `pong`s; returns
  // how many answered within `timeout`.
  int64_t PingAll(absl::Duration timeout);
  // Closes every connection with a close frame, waiting at most `timeout`.
  void CloseAll(absl::Duration timeout);

  // Summarises everything recorded so far.
  ClientReport Report();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace parley::bench
