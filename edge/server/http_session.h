#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "edge/server/dialects.h"
#include "edge/server/server_context.h"

namespace parley::edge {

// The largest HTTP request body the edge reads; a bigger one ends the connection.
inline constexpr size_t kMaxHttpRequestBodyBytes = 64 * 1024;

// A request on a dialect's path that the dialect serves over plain HTTP (Dialect::serve_http):
// the handler owns the connection from then on, and gives it back for the next request on it
// with ContinueHttp (keep-alive) or lets it close.
struct HttpHandoff {
  boost::beast::tcp_stream stream;
  // Bytes the client sent after this request.
  boost::beast::flat_buffer buffer;
  boost::beast::http::request<boost::beast::http::string_body> request;
};

// One accepted TCP connection speaking HTTP/1.1 until it upgrades: serves
// /healthz, /readyz, /metrics, the chat page and the conversations API
// (/v1/conversations, see conversations_api.h), hands WebSocket upgrades on a
// dialect's path (dialects.h) to a WebSocketTransport, and other requests there
// to the dialect. Runs on its own strand.
class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket&& socket, ServerContext& context);
  // Takes over a connection a dialect has answered a request on; `buffer` holds what was read
  // past that request.
  HttpSession(boost::beast::tcp_stream&& stream, boost::beast::flat_buffer&& buffer,
              ServerContext& context);
  ~HttpSession();

  // Registers the connection for shutdown (see ServerContext::http_connections) and reads its
  // first request. Call from the thread that accepted it, so shutdown cannot miss it.
  void Run();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;
  using Headers = std::vector<std::pair<boost::beast::http::field, std::string>>;

  void DoRead();
  // Shutdown began: a connection waiting for its next request closes; one that has sent part of
  // a request is left to finish it (within --handshake_timeout_ms).
  void OnShutdown();
  // Gives the connection to a dialect or an API; shutdown no longer tracks it here.
  HttpHandoff HandOff(Request request);
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void Handle(Request request);
  void Upgrade(const Dialect& dialect, Request request, const std::string& query);
  void CheckReady(Request request);
  void ServeApi(Request request, const std::string& path, const std::string& query);
  void Respond(const Request& request, absl::string_view path_label, unsigned status,
               std::string content_type, std::string body, Headers headers = {});
  void OnWrite(bool keep_alive, boost::beast::error_code ec, size_t bytes);

  boost::beast::tcp_stream stream_;
  // The connection's strand, kept apart from `stream_`, which a handoff moves away.
  const boost::asio::any_io_executor executor_;
  ServerContext& context_;
  uint64_t registry_key_ = 0;
  bool reading_ = false;
  bool handed_off_ = false;
  // An earlier request was answered on this connection (it is kept alive between requests).
  bool served_ = false;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<Response> response_;
};

// Reads the next request on a connection a dialect served one on (see HttpHandoff).
void ContinueHttp(ServerContext& context, HttpHandoff handoff);

// The percent-decoded value of `name` in a URL query string ("a=1&b=2"); "" when absent.
std::string QueryParameter(absl::string_view query, absl::string_view name);

// The HTTP requests metric's `path` label: a known path, or "other".
absl::string_view PathLabel(absl::string_view path);

// The WebSocket identity of a connection with no token: the `userId` query
// parameter if present, otherwise a fresh anonymous id.
std::string DevelopmentUserId(absl::string_view query);

}  // namespace parley::edge
