#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"

namespace parley::bench {

// Deliberate protocol faults, so the client's accounting can be shown to catch them.
enum class Inject {
  kNone,
  kDropSeq,     // seq 3 of every reply is never sent
  kRepeatSeq,   // seq 3 of every reply is sent twice
  kReorderSeq,  // seq 4 is sent before seq 3
};

absl::StatusOr<Inject> ParseInject(const std::string& name);

// Token schedule of a reply, in the units of parley-inference's simulated engine.
struct DirectOptions {
  int64_t ttft_ms = 0;
  // 0 sends tokens as fast as the socket takes them.
  double tokens_per_second = 50;
  int64_t max_tokens = 64;
  Inject inject = Inject::kNone;
};

// A WebSocket server that answers the native protocol's `message` frame with
// the same frames the edge sends (ack, stream_start, stream_token...,
// stream_complete) and the same token schedule as the simulated engine, but
// with no gRPC and no storage behind it. It is the floor the benchmarks
// subtract to get the latency Parley adds. Any request path is accepted.
class DirectServer {
 public:
  DirectServer(boost::asio::io_context& ioc, DirectOptions options);
  ~DirectServer();
  DirectServer(const DirectServer&) = delete;
  DirectServer& operator=(const DirectServer&) = delete;

  // Binds and starts accepting; returns the bound port (useful with port 0).
  absl::StatusOr<uint16_t> Listen(const std::string& host, uint16_t port);

  // Stops accepting; open connections end when the io_context stops.
  void Stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace parley::bench
