#pragma once

#include <chrono>
#include <memory>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/error.hpp"
#include "edge/server/server_context.h"

namespace parley::edge {

// Accepts TCP connections and starts an HttpSession on a fresh strand for each. When accepting
// fails (out of file descriptors, most often) it retries after a growing pause instead of at
// once, so a full process does not spin, and logs the failures at most once a second.
class Listener final : public std::enable_shared_from_this<Listener> {
 public:
  static absl::StatusOr<std::shared_ptr<Listener>> Create(boost::asio::io_context& io,
                                                          const boost::asio::ip::tcp::endpoint& at,
                                                          ServerContext& context);

  Listener(boost::asio::io_context& io, ServerContext& context);

  void Run();
  // Stops accepting. Any thread.
  void Stop();
  uint16_t port() const { return port_; }

 private:
  void DoAccept();
  void OnAccept(boost::beast::error_code ec, boost::asio::ip::tcp::socket socket);
  void RetryAcceptLater(const boost::beast::error_code& ec);

  // Bounds of the pause before accepting again after a failure; it doubles per failure in a row.
  static constexpr std::chrono::milliseconds kFirstRetry{5};
  static constexpr std::chrono::milliseconds kLongestRetry{250};

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  // On the acceptor's strand, like everything below.
  boost::asio::steady_timer retry_timer_;
  std::chrono::milliseconds retry_after_{0};
  // Failures since the last "accept failed" log line, and when that was.
  int unlogged_failures_ = 0;
  std::chrono::steady_clock::time_point last_failure_log_{};
  ServerContext& context_;
  uint16_t port_ = 0;
};

}  // namespace parley::edge
