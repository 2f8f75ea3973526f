#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/error.hpp"
#include "edge/server/server_context.h"

namespace parley::edge {

// Accepts TCP connections and starts an HttpSession on a fresh strand for each.
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

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  ServerContext& context_;
  uint16_t port_ = 0;
};

}  // namespace parley::edge
