#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"

namespace parley::bench {

// The client paths a turn's deadline can be given on.
enum class DeadlinePath {
  kNative,  // `deadlineMs` on the WebSocket `message` (/ws/chat)
  kOpenAi,  // `X-Parley-Deadline-Ms` on a streaming POST /v1/chat/completions
  kAiSdk,   // `X-Parley-Deadline-Ms` on POST /api/chat (the UI message stream)
};

// Parses "native,openai,ai_sdk".
absl::StatusOr<std::vector<DeadlinePath>> ParseDeadlinePaths(const std::string& text);

struct DeadlineOptions {
  std::string host;  // the edge
  uint16_t port = 0;
  std::string upstream_host;  // parley-bench --serve_upstream, behind parley-inference
  uint16_t upstream_port = 0;
  std::vector<DeadlinePath> paths;
  int64_t deadline_ms = 250;
  int64_t runs = 100;  // per path
  absl::Duration turn_timeout = absl::Seconds(30);
  std::string user = "bench-deadline";
};

// Client deadlines, end to end: `runs` turns on each path (interleaved, one at a time) whose
// reply the upstream stand-in never finishes, each with a deadline of `deadline_ms`. For each
// turn it takes the moment the deadline passed (request handed to the socket + deadline), the
// moment the client saw the turn end with deadline_exceeded, and, from the stand-in's record, the
// moment parley-inference closed the upstream request; it reports their distributions per path.
boost::json::object RunDeadline(const DeadlineOptions& options);

}  // namespace parley::bench
