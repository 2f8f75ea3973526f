#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"

namespace parley::bench {

// Now on the machine's monotonic clock (std::chrono::steady_clock, CLOCK_MONOTONIC on Linux: the
// same in every process), in nanoseconds: the unit of the stand-in's record.
int64_t MonotonicNanos();

// An OpenAI-compatible model engine stand-in for parley-inference's openai engine. It answers
// `POST …/chat/completions` with a streaming 200, a role chunk and `content_chunks` content
// chunks, and then holds the request open, as a model that is still generating would: only the
// client (parley-inference) can end it. It notes, on the machine's monotonic clock (the one
// std::chrono::steady_clock reads in every process), when each request arrived and when its
// connection was closed, keyed by the request's last message text, and serves that record as
// JSON at `GET /bench/upstream_requests`:
//
//   {"requests":[{"key":"…","request_ns":N,"closed_ns":N|null}]}
//
// so a load generator in another process can tell how soon a deadline cut the upstream.
class UpstreamServer {
 public:
  UpstreamServer(boost::asio::io_context& ioc, int content_chunks);
  ~UpstreamServer();
  UpstreamServer(const UpstreamServer&) = delete;
  UpstreamServer& operator=(const UpstreamServer&) = delete;

  // Binds and starts accepting; returns the bound port (useful with port 0).
  absl::StatusOr<uint16_t> Listen(const std::string& host, uint16_t port);

  // Stops accepting; open connections end when the io_context stops.
  void Stop();

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace parley::bench
