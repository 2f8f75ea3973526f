#include "edge/server/engine_io_session.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "boost/asio/post.hpp"

namespace parley::edge {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using engine_io::Packet;
using engine_io::PacketType;

constexpr absl::string_view kPayloadType = "text/plain; charset=UTF-8";

PollingAnswer Refusal(engine_io::ErrorCode code) {
  return PollingAnswer{static_cast<unsigned>(engine_io::HttpStatus(code)), "application/json",
                       engine_io::ErrorBody(code)};
}

PollingAnswer Payload(const std::vector<Packet>& packets) {
  return PollingAnswer{200, std::string(kPayloadType), engine_io::EncodePayload(packets)};
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

EngineIoSession::EngineIoSession(Strand strand, std::string sid, EngineIoOptions options)
    : strand_(std::move(strand)),
      sid_(std::move(sid)),
      options_(options),
      ping_timer_(strand_),
      pong_timer_(strand_),
      upgrade_timer_(strand_) {}

EngineIoSession::~EngineIoSession() = default;

void EngineIoSession::SetListener(std::shared_ptr<Listener> listener) {
  listener_ = std::move(listener);
}

void EngineIoSession::OpenPolling(Answer answer) {
  net::post(strand_, [self = shared_from_this(), answer = std::move(answer)] {
    engine_io::Handshake handshake;
    handshake.sid = self->sid_;
    handshake.upgrades = {"websocket"};
    handshake.ping_interval_ms = absl::ToInt64Milliseconds(self->options_.ping_interval);
    handshake.ping_timeout_ms = absl::ToInt64Milliseconds(self->options_.ping_timeout);
    handshake.max_payload = static_cast<int64_t>(self->options_.max_payload);
    answer(Payload({engine_io::OpenPacket(handshake)}));
    self->StartHeartbeat();
  });
}

void EngineIoSession::OpenWebSocket(std::shared_ptr<EngineIoWebSocket> socket,
                                    http::request<http::string_body> request) {
  net::post(strand_, [self = shared_from_this(), socket = std::move(socket),
                      request = std::move(request)]() mutable {
    self->phase_ = Phase::kWebSocket;
    self->websocket_ = socket;
    std::weak_ptr<EngineIoSession> weak = self;
    EngineIoWebSocket::Callbacks callbacks;
    callbacks.on_frame = [weak](std::string frame, bool binary) {
      if (auto session = weak.lock()) {
        net::post(session->strand_, [session, frame = std::move(frame), binary]() mutable {
          session->OnWebSocketFrame(std::move(frame), binary);
        });
      }
    };
    callbacks.on_closed = [weak] {
      if (auto session = weak.lock()) {
        net::post(session->strand_,
                  [session] { session->CloseOnStrand("transport close", /*tell_client=*/false); });
      }
    };
    callbacks.on_drained = [weak] {
      if (auto session = weak.lock()) {
        net::post(session->strand_, [session] { session->MaybeWritable(); });
      }
    };
    socket->Accept(std::move(request), std::move(callbacks));
    engine_io::Handshake handshake;
    handshake.sid = self->sid_;
    handshake.ping_interval_ms = absl::ToInt64Milliseconds(self->options_.ping_interval);
    handshake.ping_timeout_ms = absl::ToInt64Milliseconds(self->options_.ping_timeout);
    handshake.max_payload = static_cast<int64_t>(self->options_.max_payload);
    socket->Send(engine_io::EncodePacket(engine_io::OpenPacket(handshake)));
    self->StartHeartbeat();
  });
}

void EngineIoSession::Poll(Answer answer) {
  net::post(strand_, [self = shared_from_this(), answer = std::move(answer)]() mutable {
    switch (self->phase_) {
      case Phase::kClosed:
        return answer(Refusal(engine_io::ErrorCode::kUnknownSid));
      case Phase::kWebSocket:
        return answer(Refusal(engine_io::ErrorCode::kBadRequest));
      case Phase::kPolling:
      case Phase::kUpgrading:
        break;
    }
    if (self->pending_poll_.has_value()) {
      // Two GETs at once would deliver packets out of order: the session ends, as the
      // protocol asks.
      answer(Refusal(engine_io::ErrorCode::kBadRequest));
      self->CloseOnStrand("overlapping polls", /*tell_client=*/true);
      return;
    }
    self->pending_poll_ = std::move(answer);
    if (!self->outbox_.empty()) {
      self->Flush();
    } else if (self->phase_ == Phase::kUpgrading) {
      self->AnswerPoll({Packet{PacketType::kNoop, ""}});
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
      case Phase::kPolling:
      case Phase::kUpgrading:
        break;
    }
    absl::StatusOr<std::vector<Packet>> packets = engine_io::DecodePayload(body);
    if (!packets.ok()) {
      answer(Refusal(engine_io::ErrorCode::kBadRequest));
      self->CloseOnStrand("parse error", /*tell_client=*/true);
      return;
    }
    answer(PollingAnswer{200, "text/html", "ok"});
    for (Packet& packet : *packets) {
      if (self->phase_ == Phase::kClosed) {
        break;
      }
      self->OnPacket(std::move(packet), /*from_websocket=*/false);
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
        if (socket != nullptr && socket == session->websocket_) {
          session->CloseOnStrand("transport close", /*tell_client=*/false);
        } else if (socket != nullptr && socket == session->probe_) {
          session->probe_.reset();
          if (session->phase_ == Phase::kUpgrading) {
            session->phase_ = Phase::kPolling;
          }
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
      // One WebSocket per session: a second one (or one for a closed session) is closed.
      socket->Close(websocket::close_code::policy_error);
      return;
    }
    self->probe_ = socket;
    self->upgrade_timer_.expires_after(absl::ToChronoMilliseconds(self->options_.upgrade_timeout));
    self->upgrade_timer_.async_wait([weak, weak_socket](boost::system::error_code ec) {
      auto session = weak.lock();
      if (ec || session == nullptr) {
        return;
      }
      auto socket = weak_socket.lock();
      if (socket != nullptr && socket == session->probe_) {
        session->probe_.reset();
        if (session->phase_ == Phase::kUpgrading) {
          session->phase_ = Phase::kPolling;
        }
        socket->Close(websocket::close_code::policy_error);
      }
    });
  });
}

void EngineIoSession::OnProbeFrame(const std::shared_ptr<EngineIoWebSocket>& socket,
                                   std::string frame, bool binary) {
  if (socket == websocket_) {
    return OnWebSocketFrame(std::move(frame), binary);
  }
  if (socket != probe_ || phase_ == Phase::kClosed) {
    return;
  }
  absl::StatusOr<Packet> packet =
      binary ? absl::StatusOr<Packet>(Packet{PacketType::kMessage, std::move(frame), true})
             : engine_io::DecodePacket(frame);
  if (packet.ok() && packet->type == PacketType::kPing && packet->data == "probe") {
    socket->Send(engine_io::EncodePacket(Packet{PacketType::kPong, "probe"}));
    phase_ = Phase::kUpgrading;
    // The client waits for its pending poll to end before it sends the upgrade packet.
    if (pending_poll_.has_value()) {
      if (outbox_.empty()) {
        AnswerPoll({Packet{PacketType::kNoop, ""}});
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
  probe_.reset();
  if (phase_ == Phase::kUpgrading) {
    phase_ = Phase::kPolling;
  }
  socket->Close(websocket::close_code::protocol_error);
}

void EngineIoSession::CompleteUpgrade() {
  upgrade_timer_.cancel();
  websocket_ = std::move(probe_);
  probe_.reset();
  phase_ = Phase::kWebSocket;
  if (pending_poll_.has_value()) {
    AnswerPoll({Packet{PacketType::kNoop, ""}});
  }
  Flush();
}

void EngineIoSession::OnWebSocketFrame(std::string frame, bool binary) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  if (binary) {
    return OnPacket(Packet{PacketType::kMessage, std::move(frame), true}, /*from_websocket=*/true);
  }
  absl::StatusOr<Packet> packet = engine_io::DecodePacket(frame);
  if (!packet.ok()) {
    return CloseOnStrand("parse error", /*tell_client=*/true);
  }
  OnPacket(*std::move(packet), /*from_websocket=*/true);
}

void EngineIoSession::OnPacket(Packet packet, bool /*from_websocket*/) {
  switch (packet.type) {
    case PacketType::kPong:
      awaiting_pong_ = false;
      pong_timer_.cancel();
      SchedulePing();
      return;
    case PacketType::kMessage:
      if (listener_ != nullptr) {
        listener_->OnMessage(std::move(packet));
      }
      return;
    case PacketType::kClose:
      return CloseOnStrand("client close", /*tell_client=*/false);
    case PacketType::kPing:
      // Engine.IO v4 clients do not ping outside a probe; answering is harmless.
      outbox_.push_back(Packet{PacketType::kPong, std::move(packet.data)});
      outbox_bytes_ += outbox_.back().data.size() + 1;
      return Flush();
    case PacketType::kNoop:
      return;
    case PacketType::kOpen:
    case PacketType::kUpgrade:
      return CloseOnStrand("parse error", /*tell_client=*/true);
  }
}

void EngineIoSession::StartHeartbeat() { SchedulePing(); }

void EngineIoSession::SchedulePing() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  ping_timer_.expires_after(absl::ToChronoMilliseconds(options_.ping_interval));
  ping_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || self == nullptr || self->phase_ == Phase::kClosed) {
      return;
    }
    self->awaiting_pong_ = true;
    self->outbox_.push_back(Packet{PacketType::kPing, ""});
    self->outbox_bytes_ += 1;
    self->Flush();
    self->pong_timer_.expires_after(absl::ToChronoMilliseconds(self->options_.ping_timeout));
    self->pong_timer_.async_wait([weak](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || self == nullptr || !self->awaiting_pong_) {
        return;
      }
      self->CloseOnStrand("ping timeout", /*tell_client=*/true);
    });
  });
}

void EngineIoSession::Send(std::string message) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  outbox_bytes_ += message.size() + 1;
  outbox_.push_back(Packet{PacketType::kMessage, std::move(message)});
  if (!Writable()) {
    paused_producers_ = true;
  }
  if (phase_ != Phase::kWebSocket && outbox_bytes_ > options_.max_queued_bytes) {
    // A client that stopped polling while a reply streams: its turn runs on and is stored.
    return CloseOnStrand("client not reading", /*tell_client=*/true);
  }
  Flush();
}

bool EngineIoSession::Writable() const {
  if (phase_ == Phase::kWebSocket && websocket_ != nullptr) {
    return websocket_->queued_bytes() + outbox_bytes_ < options_.high_water_bytes;
  }
  return outbox_bytes_ < options_.high_water_bytes;
}

void EngineIoSession::MaybeWritable() {
  if (paused_producers_ && phase_ != Phase::kClosed && Writable()) {
    paused_producers_ = false;
    if (listener_ != nullptr) {
      listener_->OnWritable();
    }
  }
}

void EngineIoSession::Flush() {
  if (outbox_.empty()) {
    return;
  }
  if (phase_ == Phase::kWebSocket && websocket_ != nullptr) {
    for (const Packet& packet : outbox_) {
      websocket_->Send(engine_io::EncodePacket(packet));
    }
    outbox_.clear();
    outbox_bytes_ = 0;
    MaybeWritable();
    return;
  }
  if (pending_poll_.has_value()) {
    std::vector<Packet> packets(std::make_move_iterator(outbox_.begin()),
                                std::make_move_iterator(outbox_.end()));
    outbox_.clear();
    outbox_bytes_ = 0;
    AnswerPoll(std::move(packets));
  }
}

void EngineIoSession::AnswerPoll(std::vector<Packet> packets) {
  Answer answer = std::move(*pending_poll_);
  pending_poll_.reset();
  answer(Payload(packets));
  MaybeWritable();
}

void EngineIoSession::Close(std::string reason) {
  net::post(strand_, [self = shared_from_this(), reason = std::move(reason)] {
    self->CloseOnStrand(reason, /*tell_client=*/true);
  });
}

void EngineIoSession::CloseOnStrand(absl::string_view reason, bool tell_client) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  phase_ = Phase::kClosed;
  closed_ = true;
  ping_timer_.cancel();
  pong_timer_.cancel();
  upgrade_timer_.cancel();
  if (pending_poll_.has_value()) {
    // A close packet tells a polling client the session is over; a client that closed it
    // itself only needs its poll ended.
    const Packet last =
        tell_client ? Packet{PacketType::kClose, ""} : Packet{PacketType::kNoop, ""};
    Answer answer = std::move(*pending_poll_);
    pending_poll_.reset();
    answer(Payload({last}));
  }
  outbox_.clear();
  outbox_bytes_ = 0;
  if (websocket_ != nullptr) {
    websocket_->Close(websocket::close_code::normal);
    websocket_.reset();
  }
  if (probe_ != nullptr) {
    probe_->Close(websocket::close_code::normal);
    probe_.reset();
  }
  if (unregister_) {
    auto unregister = std::move(unregister_);
    unregister_ = nullptr;
    unregister();
  }
  if (listener_ != nullptr) {
    std::shared_ptr<Listener> listener = std::move(listener_);
    listener_.reset();
    listener->OnClosed(reason);
  }
}

std::shared_ptr<EngineIoSession> EngineIoSessions::Create(EngineIoSession::Strand strand,
                                                          const EngineIoOptions& options) {
  std::string sid = NewEngineIoSid();
  auto session = std::make_shared<EngineIoSession>(std::move(strand), sid, options);
  session->unregister_ = [this, sid] { Remove(sid); };
  absl::MutexLock lock(&mutex_);
  sessions_[sid] = session;
  return session;
}

std::shared_ptr<EngineIoSession> EngineIoSessions::Find(absl::string_view sid) const {
  absl::MutexLock lock(&mutex_);
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second;
}

void EngineIoSessions::Remove(absl::string_view sid) {
  absl::MutexLock lock(&mutex_);
  auto it = sessions_.find(sid);
  if (it != sessions_.end()) {
    sessions_.erase(it);
  }
}

void EngineIoSessions::CloseAll() {
  std::vector<std::shared_ptr<EngineIoSession>> open;
  {
    absl::MutexLock lock(&mutex_);
    for (auto& [sid, session] : sessions_) {
      open.push_back(session);
    }
  }
  for (auto& session : open) {
    session->Close("server shutting down");
  }
}

size_t EngineIoSessions::size() const {
  absl::MutexLock lock(&mutex_);
  return sessions_.size();
}

}  // namespace parley::edge
