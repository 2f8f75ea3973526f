#include "edge/server/listener.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "common/log.h"
#include "edge/server/http_session.h"

namespace parley::edge {

namespace net = boost::asio;
namespace beast = boost::beast;

absl::StatusOr<std::shared_ptr<Listener>> Listener::Create(net::io_context& io,
                                                           const net::ip::tcp::endpoint& at,
                                                           ServerContext& context) {
  auto listener = std::make_shared<Listener>(io, context);
  beast::error_code ec;
  net::ip::tcp::acceptor& acceptor = listener->acceptor_;
  acceptor.open(at.protocol(), ec);
  if (!ec) {
    acceptor.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(at, ec);
  }
  if (!ec) {
    acceptor.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", at.address().to_string(), ":",
                                               at.port(), ": ", ec.message()));
  }
  listener->port_ = acceptor.local_endpoint().port();
  return listener;
}

Listener::Listener(net::io_context& io, ServerContext& context)
    : io_(io),
      acceptor_(net::make_strand(io)),
      retry_timer_(acceptor_.get_executor()),
      context_(context) {}

void Listener::Run() {
  net::post(acceptor_.get_executor(), [self = shared_from_this()] { self->DoAccept(); });
}

void Listener::Stop() {
  net::post(acceptor_.get_executor(), [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor_.close(ec);
    self->retry_timer_.cancel();
  });
}

void Listener::DoAccept() {
  // Each connection gets its own strand: its handlers never run concurrently.
  acceptor_.async_accept(net::make_strand(io_),
                         beast::bind_front_handler(&Listener::OnAccept, shared_from_this()));
}

void Listener::OnAccept(beast::error_code ec, net::ip::tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
    return;
  }
  if (ec) {
    return RetryAcceptLater(ec);
  }
  retry_after_ = std::chrono::milliseconds(0);
  // Tokens are small frames that must leave at once: without this, Nagle's
  // algorithm holds each one back until the previous one is acknowledged.
  beast::error_code ignored;
  socket.set_option(net::ip::tcp::no_delay(true), ignored);
  std::make_shared<HttpSession>(std::move(socket), context_)->Run();
  DoAccept();
}

void Listener::RetryAcceptLater(const beast::error_code& ec) {
  // The pending connection stays in the kernel's backlog; accepting again at once would fail
  // again at once, as fast as the core allows, until a descriptor is freed.
  context_.metrics.accept_failures_total.Increment();
  retry_after_ = std::clamp(retry_after_ * 2, std::chrono::milliseconds(kFirstRetry),
                            std::chrono::milliseconds(kLongestRetry));
  ++unlogged_failures_;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_failure_log_ >= std::chrono::seconds(1)) {
    common::LogWarning("accept failed", {{"error", ec.message()},
                                         {"failures", absl::StrCat(unlogged_failures_)},
                                         {"retry_ms", absl::StrCat(retry_after_.count())}});
    unlogged_failures_ = 0;
    last_failure_log_ = now;
  }
  retry_timer_.expires_after(retry_after_);
  retry_timer_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
    if (!wait_ec && self->acceptor_.is_open()) {
      self->DoAccept();
    }
  });
}

}  // namespace parley::edge
