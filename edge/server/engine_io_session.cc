#include "edge/server/engine_io_session.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/write.hpp"
#include "common/log.h"
#include "edge/server/chat_connection.h"
#include "edge/server/dialects.h"
#include "edge/server/http_session.h"
#include "edge/server/server_context.h"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using engine_io::Packet;
using engine_io::PacketType;

constexpr absl::string_view kPayloadType = "text/plain; charset=UTF-8";
constexpr absl::Duration kWriteTimeout = absl::Seconds(30);

PollingAnswer Refusal(engine_io::ErrorCode code) {
  return PollingAnswer{static_cast<unsigned>(engine_io::HttpStatus(code)), "application/json",
                       engine_io::ErrorBody(code)};
}

constexpr absl::string_view kProtocolFrame = "protocol";

std::string Frame(PacketType type, std::string data = "") {
  return engine_io::EncodePacket(Packet{type, std::move(data)});
}

}  // namespace

std::string NewEngineIoSid() {
  thread_local absl::BitGen bitgen;
  std::string bytes(15, '\0');
  for (char& byte : bytes) {
    byte = static_cast<char>(absl::Uniform<unsigned>(bitgen, 0, 256));
  }
  return absl::WebSafeBase64Escape(bytes);
}

EngineIoSession::EngineIoSession(ServerContext& context, Strand strand, std::string sid,
                                 std::unique_ptr<DialectSession> session, ConnectionRequest request,
                                 common::TraceContext trace)
    : context_(context),
      metrics_(context.metrics.Dialect("socketio")),
      strand_(std::move(strand)),
      sid_(std::move(sid)),
      session_(std::move(session)),
      request_(std::move(request)),
      trace_(std::move(trace)),
      upgrade_timer_(strand_),
      linger_timer_(strand_) {}

EngineIoSession::~EngineIoSession() {
  if (registry_key_ != 0) {
    context_.connections.Remove(registry_key_);
  }
  if (counted_) {
    context_.open_websockets.fetch_sub(1);
  }
}

void EngineIoSession::Start(Answer answer) {
  net::post(strand_, [self = shared_from_this(), answer = std::move(answer)]() mutable {
    // A session holds its client's connection however many HTTP requests or WebSockets carry it,
    // so it counts against --max_connections like one WebSocket.
    if (self->context_.open_websockets.fetch_add(1) >= self->context_.limits.max_connections) {
      self->context_.open_websockets.fetch_sub(1);
      self->context_.metrics.HandshakeRefused("too_many_connections").Increment();
      // socket.io-client retries a failed handshake after its reconnection delay.
      answer(PollingAnswer{503, "text/plain", "too many connections; try again later\n"});
      self->phase_ = Phase::kClosed;
      return self->Unregister();
    }
    self->counted_ = true;
    std::weak_ptr<EngineIoSession> weak = self;
    self->registry_key_ = self->context_.connections.Add([weak] {
      if (auto session = weak.lock()) {
        session->Shutdown(CloseCode::kGoingAway);
      }
    });
    self->metrics_.connections.Increment();
    self->metrics_.connections_total.Increment();
    // The dialect's open packet answers the handshake request.
    self->pending_poll_ = std::move(answer);
    self->session_->Open(*self);
  });
}

absl::StatusOr<ChatUser> EngineIoSession::Authenticate(std::string_view token,
                                                       std::string_view development_user_id) {
  return AuthenticateChatUser(context_, token, development_user_id);
}

Chat& EngineIoSession::OpenChat(ChatUser user, ChatOptions options) {
  chat_ = std::make_shared<ChatConnection>(context_, metrics_, strand_, std::move(user),
                                           std::move(options), weak_from_this(), trace_);
  chat_->CloseWhenTokenExpires([weak = weak_from_this()] {
    if (std::shared_ptr<EngineIoSession> self = weak.lock()) {
      self->Close(CloseCode::kTokenExpired);
    }
  });
  return *chat_;
}

Chat* EngineIoSession::chat() { return chat_.get(); }

void EngineIoSession::Send(std::string frame) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) {
    return;
  }
  Queue(std::move(frame), kProtocolFrame);
}

void EngineIoSession::Emit(Event event, std::optional<Clock::time_point> /*arrival*/) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) {
    return;
  }
  Frames frames;
  session_->Encode(event, frames);
  for (std::string& frame : frames) {
    Queue(std::move(frame), EventName(event));
  }
}

void EngineIoSession::Queue(std::string frame, absl::string_view type) {
  outbox_bytes_ += frame.size() + 1;
  outbox_.push_back(OutboxFrame{std::move(frame), type});
  if (phase_ != Phase::kWebSocket && outbox_bytes_ > context_.limits.outbound.max_bytes) {
    // A client that stopped polling while a reply streams: the session ends, the turn runs on
    // and is stored, and the client reconnects and reads it from storage.
    common::LogInfo("socket.io client is not polling; its session is closed",
                    {{"queued_bytes", std::to_string(outbox_bytes_)}});
    return Finish();
  }
  Flush();
}

bool EngineIoSession::Writable() const {
  size_t queued = outbox_bytes_;
  if (phase_ == Phase::kWebSocket && websocket_ != nullptr) {
    queued += websocket_->queued_bytes();
  }
  return phase_ == Phase::kClosed || queued < context_.limits.outbound.high_water_bytes;
}

void EngineIoSession::WhenWritable(std::function<void()> resume) {
  if (Writable()) {
    return resume();
  }
  waiting_for_writable_.push_back(std::move(resume));
}

void EngineIoSession::MaybeWritable() {
  if (waiting_for_writable_.empty() || !Writable()) {
    return;
  }
  std::vector<std::function<void()>> waiting = std::move(waiting_for_writable_);
  waiting_for_writable_.clear();
  for (auto& resume : waiting) {
    resume();
  }
}

void EngineIoSession::Flush() {
  if (outbox_.empty()) {
    return;
  }
  if (phase_ == Phase::kWebSocket && websocket_ != nullptr) {
    for (OutboxFrame& frame : outbox_) {
      metrics_.FrameSent(frame.type).Increment();
      websocket_->Send(std::move(frame.data));
    }
    outbox_.clear();
    outbox_bytes_ = 0;
    return MaybeWritable();
  }
  if (pending_poll_.has_value()) {
    std::vector<OutboxFrame> frames(std::make_move_iterator(outbox_.begin()),
                                    std::make_move_iterator(outbox_.end()));
    outbox_.clear();
    outbox_bytes_ = 0;
    AnswerPoll(std::move(frames));
  }
}

void EngineIoSession::AnswerPoll(std::vector<OutboxFrame> frames) {
  Answer answer = std::move(*pending_poll_);
  pending_poll_.reset();
  // Frames are already encoded packets: a payload joins them with the record separator.
  std::string payload;
  for (size_t i = 0; i < frames.size(); ++i) {
    metrics_.FrameSent(frames[i].type).Increment();
    if (i > 0) {
      payload.push_back(engine_io::kRecordSeparator);
    }
    payload += frames[i].data;
  }
  answer(PollingAnswer{200, std::string(kPayloadType), std::move(payload)});
  MaybeWritable();
}

void EngineIoSession::Poll(Answer answer) {
  net::post(strand_, [self = shared_from_this(), answer = std::move(answer)]() mutable {
    switch (self->phase_) {
      case Phase::kClosed:
        return answer(Refusal(engine_io::ErrorCode::kUnknownSid));
      case Phase::kWebSocket:
        return answer(Refusal(engine_io::ErrorCode::kBadRequest));
      case Phase::kClosing: {
        // The last frames and the close packet; the session ends with this answer.
        self->pending_poll_ = std::move(answer);
        self->Flush();
        return self->Finish();
      }
      case Phase::kPolling:
      case Phase::kUpgrading:
        break;
    }
    if (self->pending_poll_.has_value()) {
      // Two GETs at once would deliver frames out of order: the session ends, as the protocol
      // asks.
      self->ReleaseConnection();
      answer(Refusal(engine_io::ErrorCode::kBadRequest));
      self->outbox_.push_back({Frame(PacketType::kClose), kProtocolFrame});
      self->Flush();
      return self->Finish();
    }
    self->pending_poll_ = std::move(answer);
    if (!self->outbox_.empty()) {
      self->Flush();
    } else if (self->phase_ == Phase::kUpgrading) {
      self->AnswerPoll({{Frame(PacketType::kNoop), kProtocolFrame}});
    }
  });
}

void EngineIoSession::Post(std::string body, Answer answer) {
  net::post(strand_, [self = shared_from_this(), body = std::move(body),
                      answer = std::move(answer)]() mutable {
    switch (self->phase_) {
      case Phase::kClosed:
        return answer(Refusal(engine_io::ErrorCode::kUnknownSid));
      case Phase::kWebSocket:
        return answer(Refusal(engine_io::ErrorCode::kBadRequest));
      case Phase::kClosing:
        return answer(PollingAnswer{200, "text/html", "ok"});
      case Phase::kPolling:
      case Phase::kUpgrading:
        break;
    }
    if (body.size() > self->context_.limits.engine_io.max_payload) {
      // Over the maxPayload the handshake announced: refused as Engine.IO servers refuse it, and
      // the session ends (the client reconnects).
      self->ReleaseConnection();
      answer(PollingAnswer{413, "text/plain", "payload too large\n"});
      return self->Finish();
    }
    absl::StatusOr<std::vector<Packet>> packets = engine_io::DecodePayload(body);
    if (!packets.ok()) {
      self->ReleaseConnection();
      answer(Refusal(engine_io::ErrorCode::kBadRequest));
      return self->Finish();
    }
    answer(PollingAnswer{200, "text/html", "ok"});
    for (const Packet& packet : *packets) {
      if (self->phase_ == Phase::kClosing || self->phase_ == Phase::kClosed) {
        break;
      }
      if (packet.binary) {
        self->session_->OnFrame(packet.data, FrameType::kBinary);
      } else {
        const std::string frame = engine_io::EncodePacket(packet);
        self->session_->OnFrame(frame, FrameType::kText);
      }
    }
  });
}

void EngineIoSession::Upgrade(std::shared_ptr<EngineIoWebSocket> socket,
                              http::request<http::string_body> request) {
  net::post(strand_, [self = shared_from_this(), socket = std::move(socket),
                      request = std::move(request)]() mutable {
    std::weak_ptr<EngineIoSession> weak = self;
    std::weak_ptr<EngineIoWebSocket> weak_socket = socket;
    EngineIoWebSocket::Callbacks callbacks;
    callbacks.on_frame = [weak, weak_socket](std::string frame, bool binary) {
      auto session = weak.lock();
      auto socket = weak_socket.lock();
      if (session == nullptr || socket == nullptr) {
        return;
      }
      net::post(session->strand_, [session, socket, frame = std::move(frame), binary]() mutable {
        session->OnProbeFrame(socket, std::move(frame), binary);
      });
    };
    callbacks.on_closed = [weak, weak_socket] {
      auto session = weak.lock();
      if (session == nullptr) {
        return;
      }
      net::post(session->strand_, [session, weak_socket] {
        auto socket = weak_socket.lock();
        if (socket == nullptr) {
          return;
        }
        if (socket == session->websocket_) {
          // The client's WebSocket went away: so did the client (it reconnects if it wants).
          session->Finish();
        } else if (socket == session->probe_) {
          session->DropProbe(socket);
        }
      });
    };
    callbacks.on_drained = [weak] {
      if (auto session = weak.lock()) {
        net::post(session->strand_, [session] { session->MaybeWritable(); });
      }
    };
    socket->Accept(std::move(request), std::move(callbacks));
    if (self->phase_ != Phase::kPolling || self->probe_ != nullptr) {
      // One WebSocket per session: a second one, or one for a session that is ending, is
      // closed.
      socket->Close(websocket::close_code::policy_error);
      return;
    }
    self->probe_ = socket;
    self->upgrade_timer_.expires_after(
        absl::ToChronoMilliseconds(self->context_.limits.engine_io.upgrade_timeout));
    self->upgrade_timer_.async_wait([weak, weak_socket](boost::system::error_code ec) {
      auto session = weak.lock();
      auto socket = weak_socket.lock();
      if (ec || session == nullptr || socket == nullptr || socket != session->probe_) {
        return;
      }
      session->DropProbe(socket);
    });
  });
}

void EngineIoSession::DropProbe(const std::shared_ptr<EngineIoWebSocket>& socket) {
  if (socket != probe_) {
    return;
  }
  probe_.reset();
  upgrade_timer_.cancel();
  if (phase_ == Phase::kUpgrading) {
    // The client goes on polling.
    phase_ = Phase::kPolling;
  }
  socket->Close(websocket::close_code::policy_error);
}

void EngineIoSession::OnProbeFrame(const std::shared_ptr<EngineIoWebSocket>& socket,
                                   std::string frame, bool binary) {
  if (socket == websocket_) {
    return OnWebSocketFrame(std::move(frame), binary);
  }
  if (socket != probe_ || (phase_ != Phase::kPolling && phase_ != Phase::kUpgrading)) {
    return;
  }
  absl::StatusOr<Packet> packet =
      binary ? absl::InvalidArgumentError("binary probe") : engine_io::DecodePacket(frame);
  if (packet.ok() && packet->type == PacketType::kPing && packet->data == "probe") {
    metrics_.FrameSent(kProtocolFrame).Increment();
    socket->Send(Frame(PacketType::kPong, "probe"));
    phase_ = Phase::kUpgrading;
    // The client waits for its pending poll to end before it sends the upgrade packet.
    if (pending_poll_.has_value()) {
      if (outbox_.empty()) {
        AnswerPoll({{Frame(PacketType::kNoop), kProtocolFrame}});
      } else {
        Flush();
      }
    }
    return;
  }
  if (packet.ok() && packet->type == PacketType::kUpgrade && phase_ == Phase::kUpgrading) {
    return CompleteUpgrade();
  }
  // Anything else on a probe is a broken client: the probe goes, the session stays on polling.
  DropProbe(socket);
}

void EngineIoSession::CompleteUpgrade() {
  upgrade_timer_.cancel();
  websocket_ = std::move(probe_);
  probe_.reset();
  phase_ = Phase::kWebSocket;
  if (pending_poll_.has_value()) {
    AnswerPoll({{Frame(PacketType::kNoop), kProtocolFrame}});
  }
  Flush();
}

void EngineIoSession::OnWebSocketFrame(std::string frame, bool binary) {
  if (phase_ != Phase::kWebSocket) {
    return;
  }
  session_->OnFrame(frame, binary ? FrameType::kBinary : FrameType::kText);
}

void EngineIoSession::Close(CloseCode code) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) {
    return;
  }
  // The session is over for its client: its place is freed before the client can learn that, so
  // it may come back at once.
  ReleaseConnection();
  if (phase_ == Phase::kWebSocket && websocket_ != nullptr) {
    Flush();
    websocket_->Close(static_cast<websocket::close_code>(code));
    return Finish();
  }
  outbox_.push_back({Frame(PacketType::kClose), kProtocolFrame});
  if (pending_poll_.has_value()) {
    Flush();
    return Finish();
  }
  // What is left waits for the client's next poll, for as long as a ping would.
  phase_ = Phase::kClosing;
  linger_timer_.expires_after(absl::ToChronoMilliseconds(context_.limits.engine_io.ping_timeout));
  linger_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (auto self = weak.lock(); !ec && self != nullptr) {
      self->Finish();
    }
  });
}

void EngineIoSession::Shutdown(CloseCode code) {
  net::post(strand_, [self = shared_from_this(), code] {
    if (self->phase_ == Phase::kClosed) {
      return;
    }
    self->ReleaseConnection();
    if (self->phase_ == Phase::kWebSocket && self->websocket_ != nullptr) {
      self->websocket_->Close(static_cast<websocket::close_code>(code));
    } else {
      // A close packet makes a polling client reconnect (elsewhere, while this edge drains).
      self->outbox_.clear();
      self->outbox_.push_back({Frame(PacketType::kClose), kProtocolFrame});
      self->Flush();
    }
    self->Finish();
  });
}

void EngineIoSession::ReleaseConnection() {
  if (counted_) {
    counted_ = false;
    context_.open_websockets.fetch_sub(1);
  }
}

void EngineIoSession::Finish() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  phase_ = Phase::kClosed;
  ReleaseConnection();
  upgrade_timer_.cancel();
  linger_timer_.cancel();
  if (pending_poll_.has_value()) {
    // The session is over: a polling client that still waits learns it and reconnects.
    AnswerPoll({{Frame(PacketType::kClose), kProtocolFrame}});
  }
  outbox_.clear();
  outbox_bytes_ = 0;
  if (websocket_ != nullptr) {
    websocket_->Close(websocket::close_code::normal);
  }
  if (probe_ != nullptr) {
    probe_->Close(websocket::close_code::normal);
    probe_.reset();
  }
  if (chat_ != nullptr) {
    chat_->Close();
  }
  session_->OnClosed();
  metrics_.connections.Decrement();
  // Nobody reads a closed session: turns waiting for it run to their end.
  std::vector<std::function<void()>> waiting = std::move(waiting_for_writable_);
  waiting_for_writable_.clear();
  for (auto& resume : waiting) {
    resume();
  }
  Unregister();
}

void EngineIoSession::Unregister() {
  if (unregister_) {
    std::function<void()> unregister = std::move(unregister_);
    unregister_ = nullptr;
    unregister();
  }
}

std::shared_ptr<EngineIoSession> EngineIoSessions::Create(ServerContext& context,
                                                          EngineIoSession::Strand strand,
                                                          std::unique_ptr<DialectSession> session,
                                                          ConnectionRequest request,
                                                          common::TraceContext trace) {
  std::string sid = NewEngineIoSid();
  request.transport_session_id = sid;
  auto created = std::make_shared<EngineIoSession>(
      context, std::move(strand), sid, std::move(session), std::move(request), std::move(trace));
  created->unregister_ = [this, sid] { Remove(sid); };
  absl::MutexLock lock(&mutex_);
  sessions_[sid] = created;
  return created;
}

std::shared_ptr<EngineIoSession> EngineIoSessions::Find(absl::string_view sid) const {
  absl::MutexLock lock(&mutex_);
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second;
}

void EngineIoSessions::Remove(const std::string& sid) {
  std::shared_ptr<EngineIoSession> removed;
  {
    absl::MutexLock lock(&mutex_);
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) {
      return;
    }
    // Released outside the lock: the session may be destroyed with it.
    removed = std::move(it->second);
    sessions_.erase(it);
  }
}

size_t EngineIoSessions::size() const {
  absl::MutexLock lock(&mutex_);
  return sessions_.size();
}

namespace {

// One HTTP request of Engine.IO: owns the connection until its answer is written, then hands it
// back for the next request (keep-alive). The answer may come from a session's strand; it is
// written on the connection's own.
class EngineIoExchange final : public std::enable_shared_from_this<EngineIoExchange> {
 public:
  EngineIoExchange(ServerContext& context, HttpHandoff handoff)
      : context_(context), handoff_(std::move(handoff)) {}

  const http::request<http::string_body>& request() const { return handoff_.request; }
  HttpHandoff& handoff() { return handoff_; }

  // Extra headers of every answer (CORS for a browser page of an allowed origin).
  void AddHeader(http::field field, std::string value) {
    headers_.emplace_back(field, std::move(value));
  }

  void Answer(PollingAnswer answer) {
    net::post(handoff_.stream.get_executor(),
              [self = shared_from_this(), answer = std::move(answer)]() mutable {
                self->Write(std::move(answer));
              });
  }

 private:
  void Write(PollingAnswer answer) {
    context_.metrics.HttpRequest("/socket.io/", static_cast<int>(answer.status)).Increment();
    response_.result(static_cast<http::status>(answer.status));
    response_.version(handoff_.request.version());
    response_.set(http::field::server, "parley-edge");
    response_.set(http::field::cache_control, "no-store");
    if (!answer.content_type.empty()) {
      response_.set(http::field::content_type, answer.content_type);
    }
    for (auto& [field, value] : headers_) {
      response_.set(field, value);
    }
    response_.keep_alive(handoff_.request.keep_alive());
    response_.body() = std::move(answer.body);
    response_.prepare_payload();
    handoff_.stream.expires_after(absl::ToChronoMilliseconds(kWriteTimeout));
    http::async_write(
        handoff_.stream, response_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(beast::error_code ec) {
    if (ec || !response_.keep_alive()) {
      beast::error_code ignored;
      handoff_.stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
      return;
    }
    ContinueHttp(context_, HttpHandoff{std::move(handoff_.stream), std::move(handoff_.buffer),
                                       http::request<http::string_body>{}});
  }

  ServerContext& context_;
  HttpHandoff handoff_;
  http::response<http::string_body> response_;
  std::vector<std::pair<http::field, std::string>> headers_;
};

}  // namespace

bool TakesEngineIoUpgrade(absl::string_view query) {
  // A WebSocket that names a session upgrades it; without a sid it is a session of its own.
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    if (absl::StartsWith(pair, "sid=")) {
      return true;
    }
  }
  return false;
}

void ServeEngineIo(ServerContext& context, const Dialect& dialect, HttpHandoff handoff) {
  auto exchange = std::make_shared<EngineIoExchange>(context, std::move(handoff));
  const http::request<http::string_body>& request = exchange->request();
  const auto origin_header = request.find(http::field::origin);
  std::optional<std::string_view> origin;
  if (origin_header != request.end()) {
    origin = std::string_view(origin_header->value().data(), origin_header->value().size());
  }
  if (!context.origins.Allows(origin)) {
    context.metrics.HandshakeRefused("origin").Increment();
    return exchange->Answer(Refusal(engine_io::ErrorCode::kForbidden));
  }
  if (origin.has_value()) {
    // A page of an allowed origin may poll from its own (socket.io-client in a browser).
    exchange->AddHeader(http::field::access_control_allow_origin, std::string(*origin));
    exchange->AddHeader(http::field::access_control_allow_credentials, "true");
    exchange->AddHeader(http::field::vary, "Origin");
  }
  if (request.method() == http::verb::options) {
    exchange->AddHeader(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
    exchange->AddHeader(http::field::access_control_allow_headers, "Authorization, Content-Type");
    return exchange->Answer(PollingAnswer{204, "", ""});
  }

  const absl::string_view target(request.target().data(), request.target().size());
  std::variant<engine_io::RequestParams, engine_io::ErrorCode> parsed =
      engine_io::ParseRequestTarget(target);
  if (const auto* error = std::get_if<engine_io::ErrorCode>(&parsed)) {
    return exchange->Answer(Refusal(*error));
  }
  const engine_io::RequestParams& params = std::get<engine_io::RequestParams>(parsed);
  const bool upgrade = beast::websocket::is_upgrade(request);
  if (upgrade != (params.transport == engine_io::Transport::kWebSocket)) {
    return exchange->Answer(Refusal(engine_io::ErrorCode::kBadRequest));
  }

  if (params.sid.empty()) {
    if (request.method() != http::verb::get) {
      return exchange->Answer(Refusal(engine_io::ErrorCode::kBadHandshakeMethod));
    }
    if (context.draining.load()) {
      context.metrics.HandshakeRefused("draining").Increment();
      return exchange->Answer(PollingAnswer{503, "text/plain", "shutting down\n"});
    }
    const size_t question = target.find('?');
    const auto authorization = request[http::field::authorization];
    ConnectionRequest opened{
        std::string(dialect.path),
        question == absl::string_view::npos ? "" : std::string(target.substr(question + 1)),
        std::string(authorization.data(), authorization.size()), std::nullopt};
    const auto traceparent = request.find("traceparent");
    common::TraceContext trace = common::ContinueOrStartTrace(
        traceparent == request.end()
            ? absl::string_view()
            : absl::string_view(traceparent->value().data(), traceparent->value().size()));
    // Every session gets a strand of its own on the server's threads.
    auto& io = static_cast<net::io_context&>(
        net::query(exchange->handoff().stream.get_executor(), net::execution::context));
    std::shared_ptr<EngineIoSession> session = context.engine_io_sessions.Create(
        context, net::make_strand(net::any_io_executor(io.get_executor())),
        dialect.new_session(context), std::move(opened), std::move(trace));
    return session->Start(
        [exchange](PollingAnswer answer) { exchange->Answer(std::move(answer)); });
  }

  std::shared_ptr<EngineIoSession> session = context.engine_io_sessions.Find(params.sid);
  if (session == nullptr) {
    // Another replica's session, or one this edge has forgotten (restart, expiry): the client
    // starts a new one.
    return exchange->Answer(Refusal(engine_io::ErrorCode::kUnknownSid));
  }
  if (upgrade) {
    HttpHandoff& handoff = exchange->handoff();
    handoff.stream.expires_never();
    auto socket = std::make_shared<EngineIoWebSocket>(
        handoff.stream.release_socket(), context.limits.max_frame_bytes,
        absl::ToChronoMilliseconds(context.limits.handshake_timeout));
    return session->Upgrade(std::move(socket), std::move(handoff.request));
  }
  if (request.method() == http::verb::get) {
    return session->Poll([exchange](PollingAnswer answer) { exchange->Answer(std::move(answer)); });
  }
  if (request.method() == http::verb::post) {
    std::string body = exchange->handoff().request.body();
    return session->Post(std::move(body),
                         [exchange](PollingAnswer answer) { exchange->Answer(std::move(answer)); });
  }
  exchange->Answer(Refusal(engine_io::ErrorCode::kBadRequest));
}

}  // namespace parley::edge
