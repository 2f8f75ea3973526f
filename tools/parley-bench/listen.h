#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "boost/asio/ip/tcp.hpp"

namespace parley::bench {

// Opens, binds and listens `acceptor` on HOST:PORT; returns the bound port (useful with port 0).
absl::StatusOr<uint16_t> BindAndListen(boost::asio::ip::tcp::acceptor& acceptor,
                                       const std::string& host, uint16_t port);

}  // namespace parley::bench
