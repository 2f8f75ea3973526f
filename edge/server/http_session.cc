#include "edge/server/http_session.h"

#include <atomic>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/write.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "common/metrics_endpoint.h"
#include "common/trace_context.h"
#include "edge/clients/health_check.h"
#include "edge/server/ai_sdk_api.h"
#include "edge/server/conversations_api.h"
#include "edge/server/openai_api.h"
#include "edge/server/websocket_transport.h"
#include "edge/web/chat_page.h"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

constexpr absl::Duration kReadinessTimeout = absl::Seconds(1);
// Bounds writing an answer; it restarts the clock, which the request's read timeout may have used
// up while a backend call was in flight.
constexpr absl::Duration kWriteTimeout = absl::Seconds(30);

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

absl::string_view PathLabel(absl::string_view path) {
  for (absl::string_view known : {"/", "/healthz", "/readyz", "/metrics"}) {
    if (path == known) {
      return known;
    }
  }
  if (const Dialect* dialect = FindDialect(path)) {
    return dialect->path;
  }
  return "other";
}

void ContinueHttp(ServerContext& context, HttpHandoff handoff) {
  std::make_shared<HttpSession>(std::move(handoff.stream), std::move(handoff.buffer), context)
      ->Run();
}

std::string QueryParameter(absl::string_view query, absl::string_view name) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first == name) {
      return PercentDecode(kv.second);
    }
  }
  return "";
}

std::string DevelopmentUserId(absl::string_view query) {
  std::string user_id = QueryParameter(query, "userId");
  if (!user_id.empty()) {
    return user_id;
  }
  thread_local absl::BitGen bitgen;
  return absl::StrFormat("anonymous-%016x%016x", absl::Uniform<uint64_t>(bitgen),
                         absl::Uniform<uint64_t>(bitgen));
}

HttpSession::HttpSession(net::ip::tcp::socket&& socket, ServerContext& context)
    : stream_(std::move(socket)), executor_(stream_.get_executor()), context_(context) {}

HttpSession::HttpSession(beast::tcp_stream&& stream, beast::flat_buffer&& buffer,
                         ServerContext& context)
    : stream_(std::move(stream)),
      executor_(stream_.get_executor()),
      context_(context),
      served_(true),
      buffer_(std::move(buffer)) {}

HttpSession::~HttpSession() { context_.http_connections.Remove(registry_key_); }

void HttpSession::Run() {
  std::weak_ptr<HttpSession> weak = weak_from_this();
  registry_key_ = context_.http_connections.Add([weak] {
    if (std::shared_ptr<HttpSession> self = weak.lock()) {
      net::dispatch(self->executor_, [self] { self->OnShutdown(); });
    }
  });
  // The socket's executor is this connection's strand.
  net::dispatch(executor_, beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
}

void HttpSession::OnShutdown() {
  if (handed_off_ || !reading_) {
    // Handed on, or answering a request: the answer goes out (without keep-alive) and the
    // connection ends with it.
    return;
  }
  if (served_ && buffer_.size() == 0 && !parser_->got_some()) {
    // A kept-alive connection between requests: closing it loses nothing. A new one is left its
    // handshake time, as its client is likely about to send its upgrade request.
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    stream_.close();
  }
}

HttpHandoff HttpSession::HandOff(Request request) {
  // The connection stays registered until this session ends, after its new owner has registered
  // it: shutdown must never see a moment when a connection is in neither registry.
  handed_off_ = true;
  return HttpHandoff{std::move(stream_), std::move(buffer_), std::move(request)};
}

void HttpSession::DoRead() {
  if (served_ && context_.draining.load() && buffer_.size() == 0) {
    // A keep-alive connection after its last answer during shutdown: nothing more is read.
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
    return;
  }
  reading_ = true;
  parser_.emplace();
  parser_->body_limit(kMaxHttpRequestBodyBytes);
  // The handshake timeout bounds how long a client may take over its request headers.
  stream_.expires_after(absl::ToChronoMilliseconds(context_.limits.handshake_timeout));
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
}

void HttpSession::OnRead(beast::error_code ec, size_t /*bytes*/) {
  reading_ = false;
  if (ec == http::error::header_limit || ec == http::error::body_limit) {
    // Too large to read, but well-formed so far: the client is told which limit it hit, then
    // the connection ends (the rest of its request is never read).
    Request refused(http::verb::get, "/", 11);
    refused.keep_alive(false);
    const bool headers = ec == http::error::header_limit;
    return Respond(
        refused, "other", headers ? 431 : 413, "text/plain",
        headers ? "request line and headers are over 8 KiB\n" : "request body is over 64 KiB\n");
  }
  if (ec) {
    // Peer closed, timed out or sent garbage: nothing to answer.
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
    return;
  }
  Handle(parser_->release());
}

void HttpSession::Handle(Request request) {
  const absl::string_view target(request.target().data(), request.target().size());
  const size_t question = target.find('?');
  const absl::string_view path = target.substr(0, question);
  const std::string query =
      question == absl::string_view::npos ? "" : std::string(target.substr(question + 1));

  const Dialect* dialect = FindDialect(path);
  if (context_.echo.has_value() && path == context_.echo->path) {
    dialect = &*context_.echo;
  }
  if (beast::websocket::is_upgrade(request)) {
    if (dialect != nullptr && dialect->serve_http != nullptr &&
        dialect->serve_http_upgrade != nullptr && dialect->serve_http_upgrade(query)) {
      return dialect->serve_http(context_, *dialect, HandOff(std::move(request)));
    }
    if (dialect != nullptr && dialect->new_session != nullptr) {
      return Upgrade(*dialect, std::move(request), query);
    }
    return Respond(request, PathLabel(path), 404, "text/plain", "no WebSocket endpoint here\n");
  }
  if (dialect != nullptr && dialect->serve_http != nullptr) {
    // The dialect's HTTP transport answers, and writes its own metrics.
    return dialect->serve_http(context_, *dialect, HandOff(std::move(request)));
  }
  if (IsAiSdkApiPath(path)) {
    return ServeAiSdkApi(context_, HandOff(std::move(request)));
  }
  if (IsOpenAiApiPath(path)) {
    // The API writes its own answer (a stream, for a streaming completion) and metrics.
    return ServeOpenAiApi(context_, HandOff(std::move(request)));
  }
  if (IsConversationsApiPath(path)) {
    // Copied first: `path` points into the request, which is moved.
    const std::string api_path(path);
    return ServeApi(std::move(request), api_path, query);
  }
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    return Respond(request, PathLabel(path), 405, "text/plain", "method not allowed\n");
  }
  if (path == "/healthz") {
    return Respond(request, path, 200, "text/plain", "ok\n");
  }
  if (path == "/readyz") {
    return CheckReady(std::move(request));
  }
  if (path == "/metrics") {
    return Respond(request, path, 200, "text/plain; version=0.0.4",
                   common::SerializeMetrics(context_.metrics.registry()));
  }
  if (path == "/" || path == "/index.html") {
    return Respond(request, "/", 200, "text/html; charset=utf-8",
                   std::string(kChatPage.data(), kChatPage.size()));
  }
  Respond(request, "other", 404, "text/plain", "not found\n");
}

void HttpSession::Upgrade(const Dialect& dialect, Request request, const std::string& query) {
  // While draining the upgrade is still answered: the WebSocket then closes at once with 1001,
  // which tells the client to reconnect elsewhere, as every other open socket is told.
  const absl::string_view label = dialect.path;
  const auto origin = request.find(http::field::origin);
  if (!context_.origins.Allows(origin == request.end()
                                   ? std::nullopt
                                   : std::optional<std::string_view>(std::string_view(
                                         origin->value().data(), origin->value().size())))) {
    context_.metrics.HandshakeRefused("origin").Increment();
    return Respond(request, label, 403, "text/plain", "origin not allowed\n");
  }
  const auto authorization = request[http::field::authorization];
  ConnectionRequest opened{std::string(dialect.path), query,
                           std::string(authorization.data(), authorization.size()), std::nullopt};
  if (!dialect.authenticates_in_session()) {
    absl::StatusOr<Identity> identity =
        context_.authenticator->Authenticate(ExtractToken(request, dialect.tokens));
    if (!identity.ok()) {
      // The reason is counted, never the token, and the client learns nothing more than 401.
      const std::optional<AuthRefusal> refusal = RefusalOf(identity.status());
      context_.metrics
          .HandshakeRefused(refusal.has_value() ? AuthRefusalLabel(*refusal) : "unauthenticated")
          .Increment();
      return Respond(request, label, 401, "text/plain", "authentication required\n",
                     {{http::field::www_authenticate, "Bearer"}});
    }
    const absl::Time valid_until = context_.authenticator->ValidUntil(*identity);
    std::string user_id =
        identity->anonymous ? DevelopmentUserId(query) : std::move(identity->user_id);
    opened.user = ChatUser{user_id, user_id, valid_until};
  }
  context_.metrics.HttpRequest(label, 101).Increment();
  const auto protocols = request[http::field::sec_websocket_protocol];
  std::string subprotocol;
  if (!dialect.subprotocol.empty() &&
      OffersSubprotocol(std::string_view(protocols.data(), protocols.size()),
                        std::string_view(dialect.subprotocol.data(), dialect.subprotocol.size()))) {
    subprotocol = std::string(dialect.subprotocol);
  }
  // The WebSocket takes over the socket; its timeouts replace the HTTP ones.
  stream_.expires_never();
  handed_off_ = true;
  const auto traceparent = request.find("traceparent");
  common::TraceContext trace = common::ContinueOrStartTrace(
      traceparent == request.end()
          ? absl::string_view()
          : absl::string_view(traceparent->value().data(), traceparent->value().size()));
  std::make_shared<WebSocketTransport>(
      stream_.release_socket(), context_, context_.metrics.Dialect(dialect.label),
      dialect.new_session(context_), std::move(opened), std::move(subprotocol), std::move(trace))
      ->Run(std::move(request));
  // Only now that the WebSocket is among the open connections does it leave the HTTP ones, so
  // shutdown, waiting on one and then the other, cannot miss it and stop the server under it.
  context_.http_connections.Remove(registry_key_);
}

void HttpSession::CheckReady(Request request) {
  if (context_.draining.load()) {
    return Respond(request, "/readyz", 503, "text/plain", "draining\n");
  }
  // Both backends are asked at once; the answer is posted back to this strand.
  struct Pending {
    std::atomic<int> remaining{2};
    std::atomic<bool> inference{false};
    std::atomic<bool> persistence{false};
  };
  auto pending = std::make_shared<Pending>();
  auto request_ptr = std::make_shared<Request>(std::move(request));
  // Shutdown waits for the answer to be posted before the io_context goes away.
  const uint64_t key = context_.tracker.Add([] {});
  auto on_answer = [self = shared_from_this(), pending, request_ptr, key] {
    if (pending->remaining.fetch_sub(1) != 1) {
      return;
    }
    ServerContext& context = self->context_;
    net::post(self->stream_.get_executor(), [self, pending, request_ptr] {
      const bool inference = pending->inference.load();
      const bool persistence = pending->persistence.load();
      const bool ready = inference && persistence && !self->context_.draining.load();
      self->Respond(*request_ptr, "/readyz", ready ? 200 : 503, "application/json",
                    absl::StrCat("{\"ready\":", ready ? "true" : "false",
                                 ",\"inference\":", inference ? "true" : "false",
                                 ",\"persistence\":", persistence ? "true" : "false", "}\n"));
    });
    context.tracker.Remove(key);
  };
  CheckServing(context_.inference->channel(), kReadinessTimeout,
               [pending, on_answer](bool serving) {
                 pending->inference = serving;
                 on_answer();
               });
  CheckServing(context_.persistence->channel(), kReadinessTimeout,
               [pending, on_answer](bool serving) {
                 pending->persistence = serving;
                 on_answer();
               });
}

void HttpSession::ServeApi(Request request, const std::string& path, const std::string& query) {
  auto request_ptr = std::make_shared<Request>(std::move(request));
  // The answer may come on a gRPC thread: it is written from this connection's strand.
  ServeConversationsApi(
      context_, *request_ptr, path, query,
      [self = shared_from_this(), request_ptr](ApiResponse answer) {
        net::post(self->stream_.get_executor(),
                  [self, request_ptr, answer = std::move(answer)]() mutable {
                    const char* content_type = answer.body.empty() ? "" : "application/json";
                    self->Respond(*request_ptr, answer.path_label, answer.status, content_type,
                                  std::move(answer.body), std::move(answer.headers));
                  });
      });
}

void HttpSession::Respond(const Request& request, absl::string_view path_label, unsigned status,
                          std::string content_type, std::string body, Headers headers) {
  context_.metrics.HttpRequest(path_label, static_cast<int>(status)).Increment();
  response_ = std::make_shared<Response>(static_cast<http::status>(status), request.version());
  response_->set(http::field::server, "parley-edge");
  if (!content_type.empty()) {
    response_->set(http::field::content_type, content_type);
  }
  response_->set(http::field::cache_control, "no-store");
  for (auto& [name, value] : headers) {
    response_->set(name, std::move(value));
  }
  // A draining edge answers, then lets the connection go.
  response_->keep_alive(request.keep_alive() && !context_.draining.load());
  if (request.method() != http::verb::head) {
    response_->body() = std::move(body);
  }
  if (status != 204) {
    // A 204 carries no Content-Length at all (RFC 9110 section 8.6).
    response_->prepare_payload();
  }
  stream_.expires_after(absl::ToChronoMilliseconds(kWriteTimeout));
  http::async_write(stream_, *response_,
                    beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this(),
                                              response_->keep_alive()));
}

void HttpSession::OnWrite(bool keep_alive, beast::error_code ec, size_t /*bytes*/) {
  response_.reset();
  if (ec || !keep_alive) {
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
    return;
  }
  served_ = true;
  DoRead();
}

}  // namespace parley::edge
