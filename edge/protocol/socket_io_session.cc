#include "edge/protocol/socket_io_session.h"

#include <utility>
#include <variant>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "common/overloaded.h"
#include "edge/auth/token_source.h"

namespace parley::edge {
namespace {

namespace json = boost::json;
using engine_io::PacketType;

using ::parley::common::Overloaded;

// What seed clients send before a login: an absent, empty, "null" or "undefined" token is no
// token at all.
bool IsNoToken(absl::string_view token) {
  return token.empty() || token == "null" || token == "undefined";
}

std::string NowRfc3339() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
}

std::string RandomHex() {
  thread_local absl::BitGen bitgen;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bitgen),
                         absl::Uniform<uint64_t>(bitgen));
}

int HexDigit(char c) {
  return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
}

// The value of `name` in a query string, percent-decoded.
std::string QueryValue(absl::string_view query, absl::string_view name) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    std::pair<absl::string_view, absl::string_view> key_value =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (key_value.first != name) {
      continue;
    }
    std::string out;
    const absl::string_view value = key_value.second;
    for (size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '+') {
        out.push_back(' ');
      } else if (value[i] == '%' && i + 2 < value.size() && absl::ascii_isxdigit(value[i + 1]) &&
                 absl::ascii_isxdigit(value[i + 2])) {
        out.push_back(static_cast<char>(HexDigit(value[i + 1]) * 16 + HexDigit(value[i + 2])));
        i += 2;
      } else {
        out.push_back(value[i]);
      }
    }
    return out;
  }
  return "";
}

// A string field of the CONNECT payload, "" when absent or not a string.
std::string AuthField(const std::optional<json::value>& data, json::string_view key) {
  if (!data.has_value() || !data->is_object()) {
    return "";
  }
  const json::value* value = data->get_object().if_contains(key);
  if (value == nullptr || !value->is_string()) {
    return "";
  }
  return std::string(value->get_string());
}

}  // namespace

SocketIoSession::SocketIoSession(engine_io::EngineIoOptions options)
    : options_(options), alive_(std::make_shared<bool>(true)) {}

SocketIoSession::~SocketIoSession() { *alive_ = false; }

void SocketIoSession::Open(DialectHost& host) {
  host_ = &host;
  ping_timer_ = std::make_unique<boost::asio::steady_timer>(host.executor());
  pong_timer_ = std::make_unique<boost::asio::steady_timer>(host.executor());
  connect_timer_ = std::make_unique<boost::asio::steady_timer>(host.executor());
  engine_io::Handshake handshake;
  // Long-polling keeps the session under its own sid; a WebSocket's session needs one too.
  handshake.sid = host.request().transport_session_id.empty() ? RandomHex().substr(0, 20)
                                                              : host.request().transport_session_id;
  // A session that started on long-polling may move to a WebSocket; one on a WebSocket stays.
  if (QueryValue(host.request().query, "transport") == "polling") {
    handshake.upgrades = {"websocket"};
  }
  handshake.ping_interval_ms = absl::ToInt64Milliseconds(options_.ping_interval);
  handshake.ping_timeout_ms = absl::ToInt64Milliseconds(options_.ping_timeout);
  handshake.max_payload = static_cast<int64_t>(options_.max_payload);
  host.Send(engine_io::EncodePacket(engine_io::OpenPacket(handshake)));
  SchedulePing();
  ArmConnectTimeout();
}

void SocketIoSession::OnClosed() {
  phase_ = Phase::kClosed;
  *alive_ = false;
  if (ping_timer_ != nullptr) {
    ping_timer_->cancel();
    pong_timer_->cancel();
    connect_timer_->cancel();
  }
}

void SocketIoSession::SchedulePing() {
  ping_timer_->expires_after(absl::ToChronoMilliseconds(options_.ping_interval));
  ping_timer_->async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive) {
      return;
    }
    awaiting_pong_ = true;
    host_->Send(engine_io::EncodePacket({PacketType::kPing, ""}));
    pong_timer_->expires_after(absl::ToChronoMilliseconds(options_.ping_timeout));
    pong_timer_->async_wait([this, alive](boost::system::error_code ec) {
      if (ec || !*alive || !awaiting_pong_) {
        return;
      }
      // The client is gone (or cannot keep up); its running turns carry on and are stored.
      phase_ = Phase::kClosed;
      host_->Close(CloseCode::kNormal);
    });
  });
}

void SocketIoSession::ArmConnectTimeout() {
  connect_timer_->expires_after(absl::ToChronoMilliseconds(options_.connect_timeout));
  connect_timer_->async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive || phase_ != Phase::kAwaitingConnect) {
      return;
    }
    phase_ = Phase::kClosed;
    host_->Close(CloseCode::kPolicy);
  });
}

void SocketIoSession::OnFrame(std::string_view frame, FrameType type) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  if (type == FrameType::kBinary) {
    // A Socket.IO binary attachment: nothing of this dialect carries binary data.
    return OnEngineIoPacket(
        engine_io::Packet{PacketType::kMessage, std::string(frame), /*binary=*/true});
  }
  absl::StatusOr<engine_io::Packet> packet =
      engine_io::DecodePacket(absl::string_view(frame.data(), frame.size()));
  if (!packet.ok()) {
    // Not Engine.IO: the protocol says close.
    phase_ = Phase::kClosed;
    return host_->Close(CloseCode::kPolicy);
  }
  OnEngineIoPacket(*std::move(packet));
}

void SocketIoSession::OnEngineIoPacket(engine_io::Packet packet) {
  switch (packet.type) {
    case PacketType::kPong:
      awaiting_pong_ = false;
      pong_timer_->cancel();
      return SchedulePing();
    case PacketType::kClose:
      phase_ = Phase::kClosed;
      return host_->Close(CloseCode::kNormal);
    case PacketType::kMessage:
      break;
    case PacketType::kPing:
    case PacketType::kOpen:
    case PacketType::kUpgrade:
    case PacketType::kNoop:
      // Transport business (a probe is answered by the transport that upgrades); nothing here.
      return;
  }
  if (packet.binary) {
    if (phase_ == Phase::kConnected) {
      Refuse("", "binary data is not supported: send JSON only", std::nullopt);
    }
    return;
  }
  absl::StatusOr<socket_io::Packet> decoded = socket_io::Decode(packet.data);
  if (!decoded.ok()) {
    if (phase_ == Phase::kConnected && absl::StrContains(decoded.status().message(), "binary")) {
      // A BINARY_EVENT: refused with a clear error; its attachments that follow are dropped.
      return Refuse("", decoded.status().message(), std::nullopt);
    }
    // A receiver closes on a packet it cannot parse.
    phase_ = Phase::kClosed;
    return host_->Close(CloseCode::kPolicy);
  }
  OnSocketIoPacket(*std::move(decoded));
}

void SocketIoSession::OnSocketIoPacket(socket_io::Packet packet) {
  switch (packet.type) {
    case socket_io::PacketType::kConnect:
      return Connect(packet);
    case socket_io::PacketType::kDisconnect:
      if (packet.nsp == socket_io::kChatNamespace && phase_ == Phase::kConnected) {
        // The client left /chat, its only namespace: the connection has nothing left to carry.
        phase_ = Phase::kClosed;
        host_->Close(CloseCode::kNormal);
      }
      return;
    case socket_io::PacketType::kEvent:
      if (packet.nsp != socket_io::kChatNamespace || phase_ != Phase::kConnected) {
        // Socket.IO servers ignore packets for a namespace the client is not connected to.
        return;
      }
      return OnChatEvent(packet.data->get_array(), packet.id);
    case socket_io::PacketType::kAck:
      // This server never asks the client for acknowledgements.
      return;
    case socket_io::PacketType::kConnectError:
    case socket_io::PacketType::kBinaryEvent:
    case socket_io::PacketType::kBinaryAck:
      phase_ = Phase::kClosed;
      return host_->Close(CloseCode::kPolicy);
  }
}

void SocketIoSession::Connect(const socket_io::Packet& packet) {
  if (packet.nsp != socket_io::kChatNamespace) {
    return SendPacket(socket_io::ConnectErrorPacket(packet.nsp, "Invalid namespace"));
  }
  if (phase_ == Phase::kConnected) {
    return;
  }
  connect_timer_->cancel();
  // auth.token first, then the handshake request's own places (Authorization, ?token=).
  std::string token = AuthField(packet.data, "token");
  if (IsNoToken(token)) {
    const ConnectionRequest& request = host_->request();
    ExtractedToken extracted = ExtractToken(absl::StrCat(request.path, "?", request.query),
                                            request.authorization, "", TokenPlaces{});
    token = IsNoToken(extracted.token) ? "" : std::move(extracted.token);
  }
  std::string development_user_id = AuthField(packet.data, "userId");
  if (development_user_id.empty()) {
    development_user_id = QueryValue(host_->request().query, "userId");
  }
  absl::StatusOr<ChatUser> user = host_->Authenticate(token, development_user_id);
  if (!user.ok()) {
    // The Engine.IO session stays; the client's connect_error fires once and, since the server
    // refused it, socket.io-client does not retry by itself.
    phase_ = Phase::kRefused;
    socket_io::Packet refusal = socket_io::ConnectErrorPacket(
        packet.nsp, token.empty() ? "Authentication required" : "Authentication failed");
    return SendPacket(refusal);
  }
  ChatOptions options;
  chat_ = &host_->OpenChat(*std::move(user), options);
  phase_ = Phase::kConnected;
  SendPacket(socket_io::ConnectPacket(packet.nsp, RandomHex().substr(0, 20)));
}

void SocketIoSession::OnChatEvent(const json::array& args, std::optional<uint64_t> ack_id) {
  std::variant<Command, socket_io::ChatEventError> decoded = socket_io::DecodeChatEvent(args);
  if (auto* error = std::get_if<socket_io::ChatEventError>(&decoded)) {
    return Refuse(error->conversation_id, error->message, ack_id);
  }
  Command command = std::get<Command>(std::move(decoded));
  if (auto* send = std::get_if<SendMessage>(&command)) {
    send->id = absl::StrCat("sio-", RandomHex());
    sends_[send->id] = Pending{ack_id, send->conversation_id, send->content};
  } else if (auto* join = std::get_if<JoinConversation>(&command)) {
    joins_[join->conversation_id].push_back(Pending{ack_id, join->conversation_id, ""});
  } else if (auto* leave = std::get_if<LeaveConversation>(&command)) {
    leaves_[leave->conversation_id].push_back(Pending{ack_id, leave->conversation_id, ""});
  } else if (ack_id.has_value()) {
    // Typing has no answer of its own: it is acknowledged as taken.
    Frames frames;
    AppendAck(frames, ack_id, json::array{json::object{{"ok", true}}});
    for (std::string& frame : frames) {
      host_->Send(std::move(frame));
    }
  }
  chat_->Handle(std::move(command));
}

void SocketIoSession::Refuse(absl::string_view conversation_id, absl::string_view error,
                             std::optional<uint64_t> ack_id) {
  // Through the chat, so the refusal is counted like every dialect's invalid frames; Encode
  // finds the conversation and the acknowledgement by the key.
  const std::string key = absl::StrCat("sio-refused-", next_key_++);
  refusals_[key] = Pending{ack_id, std::string(conversation_id), ""};
  chat_->Reject(ErrorEvent{ErrorCode::kInvalidFrame, std::string(error), key, 0, ""});
}

void SocketIoSession::Encode(const Event& event, Frames& frames) {
  std::visit(
      Overloaded{
          [&](const Ack& ack) {
            auto it = sends_.find(ack.id);
            Pending pending = it == sends_.end() ? Pending{} : std::move(it->second);
            if (it != sends_.end()) {
              sends_.erase(it);
            }
            if (!pending.conversation_id.empty()) {
              client_ids_[ack.conversation_id] = pending.conversation_id;
            }
            const std::string conversation_id = ClientConversationId(ack.conversation_id);
            AppendEvent(frames, socket_io::MessageEvent(
                                    {ack.message_id, pending.content, "user", conversation_id,
                                     ack.created_at.empty() ? NowRfc3339() : ack.created_at}));
            AppendAck(frames, pending.ack_id, socket_io::AckOk(ack.message_id));
            AppendEvent(frames, socket_io::ThinkingEvent(conversation_id));
          },
          [&](const MessageAdded& added) {
            // A message another of the user's sockets sent into a conversation this one views.
            const std::string conversation_id = ClientConversationId(added.conversation_id);
            AppendEvent(frames, socket_io::MessageEvent({added.message.id, added.message.content,
                                                         added.message.role, conversation_id,
                                                         added.message.created_at}));
            AppendEvent(frames, socket_io::ThinkingEvent(conversation_id));
          },
          [&](const StreamStart& start) {
            replies_[start.message_id] =
                Reply{ClientConversationId(start.conversation_id), "",
                      start.created_at.empty() ? NowRfc3339() : start.created_at};
          },
          [&](const StreamToken& token) {
            auto it = replies_.find(token.message_id);
            if (it == replies_.end()) {
              return;
            }
            it->second.text += token.token;
            AppendEvent(frames, socket_io::StreamingEvent(it->second.conversation_id,
                                                          token.message_id, token.token, false));
          },
          [&](const StreamComplete& complete) {
            auto it = replies_.find(complete.message_id);
            if (it == replies_.end()) {
              return;
            }
            const Reply& reply = it->second;
            AppendEvent(frames, socket_io::StreamingEvent(reply.conversation_id,
                                                          complete.message_id, "", true));
            AppendEvent(frames,
                        socket_io::MessageEvent({complete.message_id, reply.text, "assistant",
                                                 reply.conversation_id, reply.created_at}));
            AppendEvent(frames,
                        socket_io::CompleteEvent(reply.conversation_id, complete.message_id));
            replies_.erase(it);
          },
          [&](const StreamCancelled& cancelled) {
            // What was streamed is stored as it stands: the reply ends there.
            auto it = replies_.find(cancelled.message_id);
            if (it == replies_.end()) {
              return;
            }
            const Reply& reply = it->second;
            AppendEvent(frames, socket_io::StreamingEvent(reply.conversation_id,
                                                          cancelled.message_id, "", true));
            AppendEvent(frames,
                        socket_io::MessageEvent({cancelled.message_id, reply.text, "assistant",
                                                 reply.conversation_id, reply.created_at}));
            AppendEvent(frames,
                        socket_io::CompleteEvent(reply.conversation_id, cancelled.message_id));
            replies_.erase(it);
          },
          [&](const StreamInterrupted& interrupted) {
            auto it = replies_.find(interrupted.message_id);
            const std::string conversation_id =
                it == replies_.end() ? "" : it->second.conversation_id;
            AppendEvent(frames,
                        socket_io::ChatErrorEvent(conversation_id, interrupted.message.empty()
                                                                       ? interrupted.error
                                                                       : interrupted.message));
            if (it != replies_.end()) {
              replies_.erase(it);
            }
          },
          [&](const ErrorEvent& error) {
            const std::string text = socket_io::ErrorText(error);
            Pending pending;
            if (auto it = sends_.find(error.id); it != sends_.end()) {
              pending = std::move(it->second);
              sends_.erase(it);
            } else if (auto it = refusals_.find(error.id); it != refusals_.end()) {
              pending = std::move(it->second);
              refusals_.erase(it);
            } else if (!error.conversation_id.empty()) {
              // A refused join (or typing) names its conversation.
              pending.conversation_id = ClientConversationId(error.conversation_id);
              if (auto it = joins_.find(error.conversation_id);
                  it != joins_.end() && !it->second.empty()) {
                pending.ack_id = it->second.front().ack_id;
                it->second.pop_front();
                if (it->second.empty()) {
                  joins_.erase(it);
                }
              }
            }
            AppendEvent(frames, socket_io::ChatErrorEvent(pending.conversation_id, text));
            AppendAck(frames, pending.ack_id, socket_io::AckError(text));
          },
          [&](const Joined& joined) {
            AppendEvent(frames,
                        socket_io::JoinedEvent(ClientConversationId(joined.conversation_id)));
            if (auto it = joins_.find(joined.conversation_id);
                it != joins_.end() && !it->second.empty()) {
              AppendAck(frames, it->second.front().ack_id, json::array{json::object{{"ok", true}}});
              it->second.pop_front();
              if (it->second.empty()) {
                joins_.erase(it);
              }
            }
          },
          [&](const Left& left) {
            if (auto it = leaves_.find(left.conversation_id);
                it != leaves_.end() && !it->second.empty()) {
              AppendAck(frames, it->second.front().ack_id, json::array{json::object{{"ok", true}}});
              it->second.pop_front();
              if (it->second.empty()) {
                leaves_.erase(it);
              }
            }
          },
          [&](const TypingRelay& typing) {
            // Rooms are per user: whoever typed is this socket's user, on another socket.
            AppendEvent(frames,
                        socket_io::UserTypingEvent(chat_->user().id, Username(), typing.is_typing));
          },
          [&](const MemberJoined&) {
            AppendEvent(frames, socket_io::UserJoinedEvent(chat_->user().id, Username()));
          },
          [&](const MemberLeft&) {
            AppendEvent(frames, socket_io::UserLeftEvent(chat_->user().id, Username()));
          },
          // Nothing in this dialect shows reasoning, heartbeats or the native reads.
          [](const auto&) {},
      },
      event);
}

void SocketIoSession::SendPacket(const socket_io::Packet& packet) {
  host_->Send(engine_io::EncodePacket({PacketType::kMessage, socket_io::Encode(packet)}));
}

void SocketIoSession::Append(Frames& frames, const socket_io::Packet& packet) {
  frames.push_back(engine_io::EncodePacket({PacketType::kMessage, socket_io::Encode(packet)}));
}

void SocketIoSession::AppendEvent(Frames& frames, const socket_io::ChatEvent& event) {
  Append(frames, socket_io::EventPacket(event));
}

void SocketIoSession::AppendAck(Frames& frames, const std::optional<uint64_t>& ack_id,
                                json::array args) {
  if (ack_id.has_value()) {
    Append(frames, socket_io::AckPacket(*ack_id, std::move(args)));
  }
}

std::string SocketIoSession::ClientConversationId(const std::string& conversation_id) const {
  auto it = client_ids_.find(conversation_id);
  return it == client_ids_.end() ? conversation_id : it->second;
}

std::string SocketIoSession::Username() const {
  const ChatUser& user = chat_->user();
  return user.display_name.empty() ? user.id : user.display_name;
}

}  // namespace parley::edge
