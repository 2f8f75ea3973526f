#include "edge/server/event_stream_transport.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/write.hpp"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "common/log.h"
#include "edge/protocol/agent_session.h"
#include "edge/protocol/sse_events.h"
#include "edge/server/chat_connection.h"
#include "edge/server/dialects.h"
#include "edge/server/server_context.h"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace json = boost::json;

using Headers = std::vector<std::pair<std::string, std::string>>;

// Bounds one write when --slow_client_timeout_ms is 0, as it does an HTTP answer.
constexpr absl::Duration kWriteTimeout = absl::Seconds(30);

enum class WriteKind { kHead, kFrame, kLast };

std::string ErrorBody(absl::string_view code, absl::string_view message) {
  return json::serialize(json::object{
      {"error", json::object{{"code", json::string_view(code.data(), code.size())},
                             {"message", json::string_view(message.data(), message.size())}}}});
}

// Answers a request on the event-stream path that does not get a stream, then serves the
// connection's next request (or closes it).
void Refuse(ServerContext& context, absl::string_view path_label,
            std::shared_ptr<HttpHandoff> handoff, http::status status, std::string body,
            Headers headers = {}) {
  context.metrics.HttpRequest(path_label, static_cast<int>(status)).Increment();
  auto response =
      std::make_shared<http::response<http::string_body>>(status, handoff->request.version());
  response->set(http::field::server, "parley-edge");
  response->set(http::field::content_type, "application/json");
  response->set(http::field::cache_control, "no-store");
  for (auto& [name, value] : headers) {
    response->set(name, std::move(value));
  }
  response->keep_alive(handoff->request.keep_alive());
  response->body() = std::move(body);
  response->prepare_payload();
  handoff->stream.expires_after(absl::ToChronoNanoseconds(kWriteTimeout));
  http::async_write(
      handoff->stream, *response, [&context, handoff, response](beast::error_code ec, size_t) {
        if (ec || !response->keep_alive()) {
          handoff->stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
          return;
        }
        ContinueHttp(context,
                     HttpHandoff{std::move(handoff->stream), std::move(handoff->buffer), {}});
      });
}

}  // namespace

EventStreamTransport::EventStreamTransport(ServerContext& context, HttpHandoff handoff,
                                           std::unique_ptr<DialectSession> session,
                                           ConnectionRequest request, Headers response_headers,
                                           absl::string_view path_label, common::TraceContext trace)
    : context_(context),
      // The agent dialect's event stream: its metrics are the agent dialect's.
      metrics_(context.metrics.Dialect("agent")),
      stream_(std::move(handoff.stream)),
      session_(std::move(session)),
      request_(std::move(request)),
      response_headers_(std::move(response_headers)),
      path_label_(path_label),
      trace_(std::move(trace)),
      queue_(context.limits.outbound, *session_) {}

EventStreamTransport::~EventStreamTransport() {
  context_.connections.Remove(registry_key_);
  metrics_.connections.Decrement();
}

void EventStreamTransport::Run() {
  // An event stream is its client's connection for as long as the response lasts, counted like
  // a WebSocket of the dialect.
  metrics_.connections.Increment();
  metrics_.connections_total.Increment();
  std::weak_ptr<EventStreamTransport> weak = weak_from_this();
  registry_key_ = context_.connections.Add([weak] {
    if (auto self = weak.lock()) {
      self->Shutdown();
    }
  });
  context_.metrics.HttpRequest(path_label_, 200).Increment();
  stream_.expires_never();
  DoWrite();
  WatchForClose();
  session_->Open(*this);
}

void EventStreamTransport::Shutdown() {
  net::dispatch(stream_.get_executor(),
                [self = shared_from_this()] { self->Close(CloseCode::kGoingAway); });
}

absl::StatusOr<ChatUser> EventStreamTransport::Authenticate(std::string_view token,
                                                            std::string_view development_user_id) {
  return AuthenticateChatUser(context_, token, development_user_id);
}

Chat& EventStreamTransport::OpenChat(ChatUser user, ChatOptions options) {
  chat_ =
      std::make_shared<ChatConnection>(context_, metrics_, stream_.get_executor(), std::move(user),
                                       std::move(options), weak_from_this(), trace_);
  // As on a WebSocket: the dialect's error (token expired) and stream_end, then the response
  // ends. The reply goes on and is stored; a reconnect needs a fresh token.
  chat_->CloseWhenTokenExpires([weak = weak_from_this()] {
    if (std::shared_ptr<EventStreamTransport> self = weak.lock()) {
      self->Close(CloseCode::kTokenExpired);
    }
  });
  return *chat_;
}

Chat* EventStreamTransport::chat() { return chat_.get(); }

void EventStreamTransport::Send(std::string frame) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  Queue(queue_.PushFrame(std::move(frame), "protocol"));
}

void EventStreamTransport::Emit(Event event, std::optional<Clock::time_point> arrival) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  Queue(queue_.Push(std::move(event), arrival));
}

void EventStreamTransport::Queue(OutboundQueue::Pushed pushed) {
  if (pushed == OutboundQueue::Pushed::kMerged) {
    metrics_.coalesced_deltas_total.Increment();
  } else if (pushed == OutboundQueue::Pushed::kOverLimit) {
    metrics_.slow_client_closes_total.Increment();
    common::LogInfo("ending the event stream of a client that is not reading",
                    {{"queued_bytes", std::to_string(queue_.bytes())}});
    return EnterClosed();
  }
  DoWrite();
}

bool EventStreamTransport::Writable() const { return phase_ != Phase::kOpen || !queue_.Full(); }

void EventStreamTransport::WhenWritable(std::function<void()> resume) {
  if (Writable()) {
    return resume();
  }
  waiting_for_writable_.push_back(std::move(resume));
}

void EventStreamTransport::DoWrite() {
  if (writing_ || phase_ == Phase::kClosed) {
    return;
  }
  const absl::Duration timeout = context_.limits.slow_client_timeout > absl::ZeroDuration()
                                     ? context_.limits.slow_client_timeout
                                     : kWriteTimeout;
  if (!head_written_) {
    head_written_ = true;
    preamble_ =
        "HTTP/1.1 200 OK\r\n"
        "Server: parley-edge\r\n"
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-store\r\n"
        // Proxies that buffer responses (nginx) would hold the events back.
        "X-Accel-Buffering: no\r\n"
        "Transfer-Encoding: chunked\r\n"
        // A stream ends when its reply does; EventSource opens a new connection to go on.
        "Connection: close\r\n";
    for (const auto& [name, value] : response_headers_) {
      absl::StrAppend(&preamble_, name, ": ", value, "\r\n");
    }
    preamble_ += "\r\n";
    writing_ = true;
    stream_.expires_after(absl::ToChronoNanoseconds(timeout));
    net::async_write(
        stream_, net::buffer(preamble_),
        beast::bind_front_handler(&EventStreamTransport::OnWrite, shared_from_this(), false));
    return;
  }
  const OutboundQueue::Frame* frame = queue_.StartWrite();
  if (frame == nullptr) {
    if (phase_ == Phase::kEnding) {
      preamble_ = "0\r\n\r\n";
      writing_ = true;
      stream_.expires_after(absl::ToChronoNanoseconds(timeout));
      net::async_write(
          stream_, net::buffer(preamble_),
          beast::bind_front_handler(&EventStreamTransport::OnWrite, shared_from_this(), true));
    }
    return;
  }
  metrics_.FrameSent(frame->type).Increment();
  if (frame->arrival.has_value()) {
    metrics_.added_latency.Observe(
        std::chrono::duration<double>(Clock::now() - *frame->arrival).count());
  }
  preamble_ = absl::StrCat(absl::Hex(frame->data.size()), "\r\n");
  writing_ = true;
  stream_.expires_after(absl::ToChronoNanoseconds(timeout));
  const std::array<net::const_buffer, 3> chunk = {net::buffer(preamble_), net::buffer(frame->data),
                                                  net::buffer("\r\n", 2)};
  net::async_write(
      stream_, chunk,
      beast::bind_front_handler(&EventStreamTransport::OnWrite, shared_from_this(), false));
}

void EventStreamTransport::OnWrite(bool last, beast::error_code ec, size_t /*bytes*/) {
  writing_ = false;
  if (queue_.writing()) {
    queue_.FinishWrite();
  }
  if (ec || last) {
    return EnterClosed();
  }
  if (queue_.Drained()) {
    ReleaseWaiters();
  }
  DoWrite();
}

void EventStreamTransport::WatchForClose() {
  stream_.socket().async_read_some(net::buffer(scratch_),
                                   [self = shared_from_this()](beast::error_code ec, size_t) {
                                     if (ec) {
                                       // Gone (or this side closed): running turns carry on, and
                                       // are stored.
                                       return self->EnterClosed();
                                     }
                                     self->WatchForClose();
                                   });
}

void EventStreamTransport::Close(CloseCode /*code*/) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  phase_ = Phase::kEnding;
  if (chat_ != nullptr) {
    chat_->Close();
  }
  ReleaseWaiters();
  DoWrite();
}

void EventStreamTransport::EnterClosed() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  phase_ = Phase::kClosed;
  queue_.DropQueued();
  if (chat_ != nullptr) {
    chat_->Close();
  }
  session_->OnClosed();
  ReleaseWaiters();
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

void EventStreamTransport::ReleaseWaiters() {
  // A stream that takes nothing more holds no turn back: it runs to its end and is stored.
  std::vector<std::function<void()>> waiting = std::move(waiting_for_writable_);
  waiting_for_writable_.clear();
  for (auto& resume : waiting) {
    resume();
  }
}

void ServeAgentEventStream(ServerContext& context, const Dialect& dialect, HttpHandoff handoff) {
  auto request = std::make_shared<HttpHandoff>(std::move(handoff));
  const absl::string_view label = dialect.path;
  const http::request<http::string_body>& http_request = request->request;
  if (http_request.method() != http::verb::get) {
    return Refuse(context, label, request, http::status::method_not_allowed,
                  ErrorBody("method_not_allowed", "an event stream is opened with GET"),
                  {{"Allow", "GET"}});
  }
  if (context.draining.load()) {
    return Refuse(context, label, request, http::status::service_unavailable,
                  ErrorBody("shutting_down", "this server is shutting down; reconnect"));
  }
  Headers response_headers;
  const auto origin = http_request.find(http::field::origin);
  if (origin != http_request.end()) {
    const std::string_view value(origin->value().data(), origin->value().size());
    if (!context.origins.Allows(value)) {
      context.metrics.HandshakeRefused("origin").Increment();
      return Refuse(context, label, request, http::status::forbidden,
                    ErrorBody("forbidden", "origin not allowed"));
    }
    // A page on an allowed origin may read the stream (EventSource follows CORS).
    response_headers.emplace_back("Access-Control-Allow-Origin", std::string(value));
    response_headers.emplace_back("Vary", "Origin");
  }
  absl::StatusOr<Identity> identity =
      context.authenticator->Authenticate(ExtractToken(http_request, dialect.tokens));
  if (!identity.ok()) {
    const std::optional<AuthRefusal> refusal = RefusalOf(identity.status());
    context.metrics
        .HandshakeRefused(refusal.has_value() ? AuthRefusalLabel(*refusal) : "unauthenticated")
        .Increment();
    return Refuse(context, label, request, http::status::unauthorized,
                  ErrorBody("unauthenticated", "authentication required"),
                  {{"WWW-Authenticate", "Bearer"}});
  }
  const absl::string_view target(http_request.target().data(), http_request.target().size());
  const size_t question_mark = target.find('?');
  const std::string query =
      question_mark == absl::string_view::npos ? "" : std::string(target.substr(question_mark + 1));
  const absl::Time valid_until =
      identity->anonymous ? absl::InfiniteFuture() : context.authenticator->ValidUntil(*identity);
  const std::string user_id =
      identity->anonymous ? DevelopmentUserId(query) : std::move(identity->user_id);
  const std::string display_name =
      identity->display_name.empty() ? user_id : std::move(identity->display_name);
  const auto authorization = http_request[http::field::authorization];
  // The stream ends when the token that opened it expires (see OpenChat).
  ConnectionRequest opened{std::string(dialect.path), query,
                           std::string(authorization.data(), authorization.size()),
                           ChatUser{user_id, display_name, valid_until}};
  const auto traceparent = http_request.find("traceparent");
  common::TraceContext trace = common::ContinueOrStartTrace(
      traceparent == http_request.end()
          ? absl::string_view()
          : absl::string_view(traceparent->value().data(), traceparent->value().size()));

  const auto last_event_id = http_request.find("Last-Event-ID");
  if (last_event_id == http_request.end() || last_event_id->value().empty()) {
    if (absl::StripAsciiWhitespace(QueryParameter(query, "question")).empty()) {
      return Refuse(
          context, label, request, http::status::bad_request,
          ErrorBody("invalid_request", "the \"question\" query parameter is missing or empty"));
    }
    auto session = std::make_unique<AgentSession>(AgentSession::Transport::kEventStream);
    return std::make_shared<EventStreamTransport>(context, std::move(*request), std::move(session),
                                                  std::move(opened), std::move(response_headers),
                                                  label, std::move(trace))
        ->Run();
  }

  // EventSource reconnecting: the rest of the reply it names, never the question again.
  absl::StatusOr<EventStreamPosition> position =
      ParseEventId(absl::string_view(last_event_id->value().data(), last_event_id->value().size()));
  if (!position.ok()) {
    return Refuse(context, label, request, http::status::bad_request,
                  ErrorBody("invalid_request", position.status().message()));
  }
  persistence_pb::GetMessageRequest get;
  get.set_user_id(user_id);
  get.set_message_id(position->reply_id);
  // Shutdown waits for the answer to be posted before the io_context goes away.
  const uint64_t key = context.tracker.Add([] {});
  const net::any_io_executor executor = request->stream.get_executor();
  context.persistence->GetMessage(
      std::move(get), trace,
      [&context, label, request, executor, key, position = *std::move(position),
       opened = std::move(opened), response_headers = std::move(response_headers),
       trace](absl::StatusOr<persistence_pb::GetMessageResponse> response) mutable {
        net::post(executor, [&context, label, request, position = std::move(position),
                             opened = std::move(opened),
                             response_headers = std::move(response_headers),
                             trace = std::move(trace), response = std::move(response)]() mutable {
          if (!response.ok() && response.status().code() != absl::StatusCode::kNotFound) {
            return Refuse(
                context, label, request, http::status::service_unavailable,
                ErrorBody("storage_unavailable",
                          absl::StrCat("cannot find the reply: ", response.status().message())));
          }
          // Someone else's reply answers exactly like a missing one.
          if (!response.ok() || response->message().role() != persistence_pb::ROLE_ASSISTANT) {
            return Refuse(context, label, request, http::status::not_found,
                          ErrorBody("not_found", "Last-Event-ID names no reply of this user"));
          }
          std::string conversation_id = response->message().conversation_id();
          std::make_shared<EventStreamTransport>(
              context, std::move(*request),
              AgentSession::Continuing(std::move(position), std::move(conversation_id)),
              std::move(opened), std::move(response_headers), label, std::move(trace))
              ->Run();
        });
        context.tracker.Remove(key);
      });
}

}  // namespace parley::edge
