#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/ssl/ssl_stream.hpp"

namespace parley::inference {

// Where an OpenAI-compatible server lives: http[s]://host[:port][/prefix].
struct UpstreamUrl {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  std::string path_prefix;  // Without a trailing slash; "" for the root.

  // Identifies the connection pool the URL's connections share.
  std::string Origin() const;
  // The request target for `path` (e.g. "/v1/chat/completions") under the prefix.
  std::string Target(std::string_view path) const;
};

absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(std::string_view url);

// One HTTP/1.1 connection to an upstream, plain TCP or TLS. The owner drives
// it with the async helpers below; `reused` says it came from the pool, so a
// failure before any response byte may just mean the server closed it idle.
struct UpstreamConnection {
  using PlainStream = boost::beast::tcp_stream;
  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  UpstreamConnection(boost::asio::io_context& io, boost::asio::ssl::context* tls);

  boost::beast::tcp_stream& tcp();
  // Closes the socket now: the upstream sees the disconnect at once.
  void Close();

  std::variant<PlainStream, TlsStream> stream;
  boost::asio::ip::tcp::resolver resolver;
  boost::beast::flat_buffer buffer;
  bool reused = false;
};

// Shares keep-alive connections and the TLS context between the engines of
// all routes. At most `max_idle_per_origin` idle connections are kept per
// upstream; extra ones are closed. Thread-safe.
class UpstreamTransport {
 public:
  struct Options {
    // Trusted CAs for TLS upstreams; empty uses the system's bundle.
    std::string ca_file;
    size_t max_idle_per_origin = 16;
  };

  static absl::StatusOr<std::shared_ptr<UpstreamTransport>> Create(boost::asio::io_context& io,
                                                                   Options options);

  // A pooled idle connection to `url`'s origin, or a new unconnected one.
  std::unique_ptr<UpstreamConnection> Take(const UpstreamUrl& url);
  // Returns a connection whose last response was read completely.
  void Put(const UpstreamUrl& url, std::unique_ptr<UpstreamConnection> connection);

  boost::asio::io_context& io() { return io_; }
  boost::asio::ssl::context& tls_context() { return tls_; }

 private:
  UpstreamTransport(boost::asio::io_context& io, Options options);

  boost::asio::io_context& io_;
  const Options options_;
  boost::asio::ssl::context tls_;
  absl::Mutex mutex_;
  std::map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>> idle_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::inference
