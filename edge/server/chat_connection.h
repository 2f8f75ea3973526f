#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "common/trace_context.h"
#include "edge/limits/token_bucket.h"
#include "edge/protocol/dialect_session.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/turn.h"

namespace parley::edge {

struct ServerContext;
class DialectMetrics;
class Turn;
struct ReadAnswer;

// One client's chat, whatever carries it: takes commands, runs the turns they start, answers
// reads (history, messages, conversations), joins rooms and relays typing, and enforces the
// connection's limits. Its events go to `out`, the transport's sink, which encodes them in the
// client's dialect; `out` may go away first (the client left), and then events are dropped while
// running turns carry on and are stored. Owned by whatever keeps the client's connection (a
// WebSocket, an Engine.IO session that outlives its HTTP requests); lives on that connection's
// strand, and through shared_from_this while a read it started is pending.
class ChatConnection final : public Chat,
                             public EventSink,
                             public std::enable_shared_from_this<ChatConnection> {
 public:
  // Conversations one connection may view at once; a client needs one or two.
  static constexpr size_t kMaxJoined = 32;

  // `trace` comes from the request that opened the connection; each turn is its child.
  // `metrics` are those of the client's dialect.
  ChatConnection(ServerContext& context, DialectMetrics& metrics,
                 boost::asio::any_io_executor executor, ChatUser user, ChatOptions options,
                 std::weak_ptr<EventSink> out,
                 common::TraceContext trace = common::NewTraceContext());
  ~ChatConnection() override;

  // Chat
  void Handle(Command command) override;
  void Reject(ErrorEvent error) override;
  const ChatUser& user() const override { return user_; }

  // EventSink: what turns, reads and rooms tell this client.
  void Emit(Event event, std::optional<Clock::time_point> arrival) override;
  bool Writable() const override;
  void WhenWritable(std::function<void()> resume) override;

  // The client is gone or being closed: leaves its rooms and answers nothing more. Running turns
  // carry on and are stored.
  void Close();

  // A turn this connection started is still streaming its reply.
  bool HasRunningTurns() const;

  // When the user's token expires (ChatUser::valid_until) and no RenewToken brought a fresh one,
  // tells the client (ErrorCode::kTokenExpired) and calls `close`, which ends the connection
  // with CloseCode::kTokenExpired. Call once, right after construction.
  void CloseWhenTokenExpires(std::function<void()> close);

 private:
  void StartTurn(SendMessage message);
  // Where the answer to a read (history, messages) goes.
  ReadAnswer Answer();
  void Join(const std::string& conversation_id);
  // Joins the room `room` (a stored id, or a name not stored yet) as `conversation_id`.
  void OnJoinAllowed(const std::string& conversation_id, const std::string& room);
  void Leave(const std::string& conversation_id);
  void RelayTyping(const Typing& typing);
  void CancelTurn(const std::string& message_id);
  void WatchTokenExpiry();
  // A fresh token of the same user moves valid_until_; any other is refused, and the connection
  // keeps the token it has.
  void RenewUserToken(const std::string& token);

  ServerContext& context_;
  DialectMetrics& metrics_;
  boost::asio::any_io_executor executor_;
  const ChatUser user_;
  const ChatOptions options_;
  const std::weak_ptr<EventSink> out_;
  const common::TraceContext trace_;
  // This connection's key in ConversationRooms.
  const uint64_t room_key_;
  // This connection's share of the message rate (the user's is in UserLimits).
  TokenBucket message_bucket_;
  TokenBucket typing_bucket_;
  // Conversations this connection views, as the client names them, and their rooms
  // (ConversationRooms); left when it ends.
  std::map<std::string, std::string> joined_;
  // Turns this connection started that may still run, so `cancel` can find them.
  std::vector<std::weak_ptr<Turn>> turns_;
  std::shared_ptr<HeldBranch> held_branch_;
  bool closed_ = false;
  absl::Time valid_until_;
  // Made for a token that expires (most connections' never does).
  std::unique_ptr<boost::asio::steady_timer> expiry_timer_;
  std::function<void()> close_expired_;
};

// The user a token names, by the edge's rules, for transports whose dialect authenticates after
// the transport is up (DialectHost::Authenticate): an empty `token` is no token (anonymous in
// development mode, named by `development_user_id` when set); the display name is the token's
// `name` (or `preferred_username`) claim, else the id. A refusal is counted as a refused
// handshake.
absl::StatusOr<ChatUser> AuthenticateChatUser(ServerContext& context, std::string_view token,
                                              std::string_view development_user_id);

}  // namespace parley::edge
