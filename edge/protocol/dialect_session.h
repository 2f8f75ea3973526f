#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/any_io_executor.hpp"
#include "edge/protocol/messages.h"

// How a client dialect meets the edge. A transport (WebSocket, Engine.IO polling, an SSE
// response) carries a dialect's frames; the dialect's per-connection DialectSession turns them
// into commands for the client's Chat and turns the Chat's events into 0..n frames. Dialects
// without protocol state are a pure Codec (codec.h) behind the CodecSession adapter. None of
// these types knows the transport, so a session is unit-tested with a fake host and a fake chat.
namespace parley::edge {

// Why a connection ends; the same fault closes every dialect with the same code. The values are
// the WebSocket close codes; a transport without close frames simply ends.
enum class CloseCode : uint16_t {
  kNormal = 1000,
  kGoingAway = 1001,      // The server is shutting down.
  kPolicy = 1008,         // A limit or rule was broken (slow client, rate limit, bad request).
  kTooBig = 1009,         // A frame over --max_frame_bytes.
  kInternalError = 1011,  // A one-turn connection whose turn failed in the model or storage.
  kTryAgainLater = 1013,  // Over --max_connections.
  // The token the connection was opened with expired and no fresh one came (private range,
  // 4000-4999; the number echoes HTTP 401).
  kTokenExpired = 4401,
};

enum class FrameType { kText, kBinary };

// The frames one event becomes, in order.
using Frames = std::vector<std::string>;

// Who the client is.
struct ChatUser {
  std::string id;
  // What other people see (Socket.IO's `username`): the token's name, else the id.
  std::string display_name;
  // When the token that let the user in stops being accepted (its `exp` plus the allowed clock
  // skew): the connection is closed then, unless a fresh token came first. Never for a user let
  // in without a token (development mode).
  absl::Time valid_until = absl::InfiniteFuture();
};

// Per-dialect behaviour of the chat connection.
struct ChatOptions {
  // Messages per minute (and burst) one connection may send; unset keeps --messages_per_minute
  // and --message_burst. The user's budget over all connections applies either way.
  std::optional<int> messages_per_minute;
  std::optional<int> message_burst;
  // Clients of some dialects hard-code model names (`gpt-4o`): those get the default model
  // rather than not_found. StreamStart and StreamComplete name the model that answered.
  UnknownModel unknown_model = UnknownModel::kRefuse;
  // Closing the connection stops the replies it started (a client whose Stop button closes its
  // socket); they are stored as cancelled with what was streamed. Otherwise a dropped connection
  // is no cancel: its replies run to their end and are stored.
  bool cancel_turns_on_close = false;
};

// What a dialect session learns about the request that opened its connection.
struct ConnectionRequest {
  std::string path;
  std::string query;  // After '?', still percent-encoded; see QueryParameter().
  std::string authorization;
  // Set when the route authenticated the request itself (the dialect's token is in the request);
  // unset for a dialect that authenticates in its own protocol (Socket.IO's CONNECT).
  std::optional<ChatUser> user;
  // The id a transport that keeps sessions between requests gave this one (an Engine.IO
  // long-polling sid); empty for a plain WebSocket.
  std::string transport_session_id;
};

// The chat connection as a dialect session drives it. Calls are made on the connection's
// strand.
class Chat {
 public:
  virtual ~Chat() = default;

  // One client command; its answers come back through DialectSession::Encode.
  virtual void Handle(Command command) = 0;
  // Answers a frame the dialect could not decode with `error` (counted as an invalid frame).
  virtual void Reject(ErrorEvent error) = 0;
  virtual const ChatUser& user() const = 0;
};

// Turns events into the frames a client of one dialect reads.
class EventEncoder {
 public:
  virtual ~EventEncoder() = default;

  // Appends the frames that tell the client `event`: none, one or several. Called once per
  // event, on the connection's strand, in the order the events were emitted; consecutive token
  // deltas of one reply that the outbound queue merged arrive as one StreamToken.
  virtual void Encode(const Event& event, Frames& frames) = 0;
};

// What a transport offers the dialect session it carries. Strand-bound, like the session.
class DialectHost {
 public:
  virtual ~DialectHost() = default;

  virtual const ConnectionRequest& request() const = 0;
  // The connection's strand, for the session's timers.
  virtual boost::asio::any_io_executor executor() = 0;

  // Checks a token with the edge's rules (an empty `token` is no token: anonymous in development
  // mode, where `development_user_id` names the user when set). An Unauthenticated status on
  // refusal, counted as a refused handshake.
  virtual absl::StatusOr<ChatUser> Authenticate(std::string_view token,
                                                std::string_view development_user_id) = 0;
  // Creates the connection's chat once the client's user is known: at open for most dialects,
  // later for one that authenticates in its protocol. Once only; the host owns the chat.
  virtual Chat& OpenChat(ChatUser user, ChatOptions options) = 0;
  // Null until OpenChat.
  virtual Chat* chat() = 0;

  // Sends a frame of the dialect's own (a handshake, a ping), in order with event frames.
  virtual void Send(std::string frame) = 0;
  // The same as a binary message, where the transport has those; as Send() elsewhere.
  virtual void SendBinary(std::string frame) { Send(std::move(frame)); }
  // Ends the connection with `code` once the frames already sent are written. Nothing is sent
  // after it.
  virtual void Close(CloseCode code) = 0;
};

// One connection's state in one dialect. Created by its Dialect entry (dialects.h) when the
// transport is up, owned by the transport, used on the connection's strand only.
class DialectSession : public EventEncoder {
 public:
  // The transport is open. `host` outlives the session.
  virtual void Open(DialectHost& host) = 0;
  // One frame from the client.
  virtual void OnFrame(std::string_view frame, FrameType type) = 0;
  // The transport ended (client gone, server closed it): stop timers. No more calls follow.
  virtual void OnClosed() {}
};

}  // namespace parley::edge
