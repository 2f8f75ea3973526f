#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "boost/asio/steady_timer.hpp"
#include "boost/json/value.hpp"
#include "edge/protocol/dialect_session.h"
#include "edge/protocol/engine_io.h"
#include "edge/protocol/socket_io.h"
#include "edge/protocol/socket_io_chat.h"

namespace parley::edge {

// One client of the Socket.IO dialect (socket.io-client v3/v4 on /socket.io/, namespace /chat).
// Its frames are Engine.IO packets, whatever carries them: a WebSocket (one packet per frame) or
// an Engine.IO long-polling session (one packet per record of a payload); an upgrade from one to
// the other is the transport's business and invisible here. The session speaks Engine.IO's open
// packet and heartbeat (the server pings every interval, a client that does not answer within
// the timeout is closed), then Socket.IO: the namespace CONNECT, where the client authenticates
// (its `auth.token`, else the handshake's Authorization header or `token` parameter) and is
// answered CONNECT {sid} or CONNECT_ERROR {message}; then the chat:* events, with the
// acknowledgements the client asks for. The mapping itself is socket_io_chat.h's pure functions;
// this class keeps what one connection must remember: which user it is, the acknowledgement
// ids of the commands in flight, and which conversation each reply streams into.
class SocketIoSession final : public DialectSession {
 public:
  explicit SocketIoSession(engine_io::EngineIoOptions options);
  ~SocketIoSession() override;

  void Open(DialectHost& host) override;
  void OnFrame(std::string_view frame, FrameType type) override;
  void Encode(const Event& event, Frames& frames) override;
  void OnClosed() override;

 private:
  enum class Phase {
    kAwaitingConnect,  // Engine.IO is open; the client has not connected to /chat yet.
    kConnected,        // Connected to /chat: chat events flow.
    kRefused,          // CONNECT_ERROR sent; the client's connect_error fired.
    kClosed,
  };

  // A chat:send, chat:join or chat:leave waiting for its answer.
  struct Pending {
    std::optional<uint64_t> ack_id;
    std::string conversation_id;  // As the client named it ("" for a new conversation).
    std::string content;
  };

  // A reply streaming to this client.
  struct Reply {
    std::string conversation_id;  // As the client knows it.
    std::string text;
    std::string created_at;
  };

  void OnEngineIoPacket(engine_io::Packet packet);
  void OnSocketIoPacket(socket_io::Packet packet);
  void Connect(const socket_io::Packet& packet);
  void OnChatEvent(const boost::json::array& args, std::optional<uint64_t> ack_id);
  void Refuse(absl::string_view conversation_id, absl::string_view error,
              std::optional<uint64_t> ack_id);

  void SchedulePing();
  void ArmConnectTimeout();

  // Sends a Socket.IO packet (as an Engine.IO message) now, in order with event frames.
  void SendPacket(const socket_io::Packet& packet);
  static void Append(Frames& frames, const socket_io::Packet& packet);
  void AppendEvent(Frames& frames, const socket_io::ChatEvent& event);
  void AppendAck(Frames& frames, const std::optional<uint64_t>& ack_id, boost::json::array args);

  // The id the client uses for a conversation the edge names `conversation_id`.
  std::string ClientConversationId(const std::string& conversation_id) const;
  std::string Username() const;

  const engine_io::EngineIoOptions options_;
  DialectHost* host_ = nullptr;
  Chat* chat_ = nullptr;
  Phase phase_ = Phase::kAwaitingConnect;
  std::unique_ptr<boost::asio::steady_timer> ping_timer_;
  std::unique_ptr<boost::asio::steady_timer> pong_timer_;
  std::unique_ptr<boost::asio::steady_timer> connect_timer_;
  bool awaiting_pong_ = false;
  // Incremented on close so that timers fired afterwards do nothing; their handlers hold only
  // this generation and a pointer guarded by it.
  std::shared_ptr<bool> alive_;
  // chat:send in flight, by the idempotency key the session gave it.
  std::map<std::string, Pending> sends_;
  // Errors answered for events that never reached the chat, by their key.
  std::map<std::string, Pending> refusals_;
  // chat:join and chat:leave in flight, by conversation, oldest first.
  std::map<std::string, std::deque<Pending>> joins_;
  std::map<std::string, std::deque<Pending>> leaves_;
  std::map<std::string, Reply> replies_;
  // The edge's id of a conversation → the id the client named it by.
  std::map<std::string, std::string> client_ids_;
  uint64_t next_key_ = 1;
};

}  // namespace parley::edge
