#include "inference/engines/upstream_connection.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/ssl/verify_mode.hpp"

namespace parley::inference {

namespace asio = boost::asio;

std::string UpstreamUrl::Origin() const {
  return absl::StrCat(tls ? "https://" : "http://", host, ":", port);
}

std::string UpstreamUrl::Target(std::string_view path) const {
  return absl::StrCat(path_prefix, absl::string_view(path.data(), path.size()));
}

absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(std::string_view url) {
  UpstreamUrl result;
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    result.tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream URL must start with http:// or https://: ", std::string(url)));
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') {
    path.remove_suffix(1);
  }
  // A base URL given as ".../v1" is common; the engine appends /v1/chat/completions itself.
  if (path.ends_with("/v1")) {
    path.remove_suffix(3);
  }
  result.path_prefix = std::string(path);
  result.port = result.tls ? 443 : 80;
  std::string_view host = authority;
  if (authority.starts_with("[")) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad upstream URL: ", std::string(url)));
    }
    host = authority.substr(1, close - 1);
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority[0] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad upstream URL: ", std::string(url)));
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    authority.remove_prefix(colon);
  } else {
    authority = {};
  }
  if (authority.starts_with(":")) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(absl::string_view(authority.data() + 1, authority.size() - 1), &port) ||
        port == 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad port in upstream URL: ", std::string(url)));
    }
    result.port = static_cast<uint16_t>(port);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no host in upstream URL: ", std::string(url)));
  }
  result.host = std::string(host);
  return result;
}

UpstreamConnection::UpstreamConnection(asio::io_context& io, asio::ssl::context* tls)
    : stream(tls == nullptr
                 ? std::variant<PlainStream, TlsStream>(std::in_place_index<0>, io)
                 : std::variant<PlainStream, TlsStream>(std::in_place_index<1>, io, *tls)),
      resolver(io) {}

boost::beast::tcp_stream& UpstreamConnection::tcp() {
  if (auto* plain = std::get_if<PlainStream>(&stream)) {
    return *plain;
  }
  return std::get<TlsStream>(stream).next_layer();
}

void UpstreamConnection::Close() {
  resolver.cancel();
  boost::system::error_code ignored;
  tcp().socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  tcp().close();
}

absl::StatusOr<std::shared_ptr<UpstreamTransport>> UpstreamTransport::Create(asio::io_context& io,
                                                                             Options options) {
  std::shared_ptr<UpstreamTransport> transport(new UpstreamTransport(io, std::move(options)));
  boost::system::error_code error;
  transport->tls_.set_verify_mode(asio::ssl::verify_peer, error);
  if (transport->options_.ca_file.empty()) {
    transport->tls_.set_default_verify_paths(error);
  } else {
    transport->tls_.load_verify_file(transport->options_.ca_file, error);
  }
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load upstream CA certificates: ", error.message()));
  }
  return transport;
}

UpstreamTransport::UpstreamTransport(asio::io_context& io, Options options)
    : io_(io), options_(std::move(options)), tls_(asio::ssl::context::tls_client) {}

std::unique_ptr<UpstreamConnection> UpstreamTransport::Take(const UpstreamUrl& url) {
  {
    absl::MutexLock lock(&mutex_);
    auto it = idle_.find(url.Origin());
    if (it != idle_.end() && !it->second.empty()) {
      std::unique_ptr<UpstreamConnection> connection = std::move(it->second.back());
      it->second.pop_back();
      connection->reused = true;
      return connection;
    }
  }
  return std::make_unique<UpstreamConnection>(io_, url.tls ? &tls_ : nullptr);
}

void UpstreamTransport::Put(const UpstreamUrl& url,
                            std::unique_ptr<UpstreamConnection> connection) {
  connection->buffer.clear();
  absl::MutexLock lock(&mutex_);
  std::vector<std::unique_ptr<UpstreamConnection>>& idle = idle_[url.Origin()];
  if (idle.size() < options_.max_idle_per_origin) {
    idle.push_back(std::move(connection));
  }
}

}  // namespace parley::inference
