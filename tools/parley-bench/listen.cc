#include "tools/parley-bench/listen.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace parley::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

absl::StatusOr<uint16_t> BindAndListen(tcp::acceptor& acceptor, const std::string& host,
                                       uint16_t port) {
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("bad listen address ", host));
  }
  const tcp::endpoint endpoint(address, port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", host, ":", port, ": ", ec.message()));
  }
  return acceptor.local_endpoint().port();
}

}  // namespace parley::bench
