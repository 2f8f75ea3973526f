#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "absl/strings/string_view.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "edge/protocol/messages.h"
#include "edge/protocol/socket_io.h"

// The chat events of the Socket.IO dialect (namespace /chat) and the edge's commands and events:
// pure functions, no state. The per-connection state (which namespace is connected, which reply
// belongs to which conversation, the acknowledgement ids) is the dialect session's.
//
// In:  chat:send {conversationId, content, role}, chat:typing {conversationId, isTyping},
//      chat:join {conversationId}, chat:leave {conversationId}
// Out: chat:message, chat:thinking, chat:streaming, chat:complete, chat:error, chat:joined,
//      chat:user-joined, chat:user-left, chat:user-typing
namespace parley::edge::socket_io {

// The one namespace this dialect serves.
inline constexpr absl::string_view kChatNamespace = "/chat";

// A client event that cannot become a command, with the conversation it named (if any) so the
// answer can say which conversation it is about.
struct ChatEventError {
  std::string conversation_id;
  std::string message;
};

// Decodes the arguments of an EVENT packet (["chat:send", {…}]) into a SendMessage (with an
// empty `id`: the session gives each send its own idempotency key), a Typing, a JoinConversation
// or a LeaveConversation. Unknown event names and malformed payloads come back as errors.
std::variant<Command, ChatEventError> DecodeChatEvent(const boost::json::array& args);

// One event for the client: its name and its single argument.
struct ChatEvent {
  std::string name;
  boost::json::object payload;

  friend bool operator==(const ChatEvent&, const ChatEvent&) = default;
};

// A conversation's message as the seed's Message type has it:
// {id, content, role, conversationId, createdAt} with createdAt an ISO 8601 string.
struct ChatMessage {
  std::string id;
  std::string content;
  std::string role;  // "user" or "assistant"
  std::string conversation_id;
  std::string created_at;
};

ChatEvent MessageEvent(const ChatMessage& message);
ChatEvent ThinkingEvent(absl::string_view conversation_id);
ChatEvent StreamingEvent(absl::string_view conversation_id, absl::string_view message_id,
                         absl::string_view chunk, bool is_complete);
ChatEvent CompleteEvent(absl::string_view conversation_id, absl::string_view message_id);
ChatEvent ChatErrorEvent(absl::string_view conversation_id, absl::string_view error);
ChatEvent JoinedEvent(absl::string_view conversation_id);
ChatEvent UserJoinedEvent(absl::string_view user_id, absl::string_view username);
ChatEvent UserLeftEvent(absl::string_view user_id, absl::string_view username);
ChatEvent UserTypingEvent(absl::string_view user_id, absl::string_view username, bool is_typing);

// The text of a chat:error for an edge error: its message, or its code's name when it has none.
std::string ErrorText(const ErrorEvent& error);

// The arguments of an acknowledgement: [{ok:true, messageId}] or [{ok:false, error}].
boost::json::array AckOk(absl::string_view message_id);
boost::json::array AckError(absl::string_view error);

// The EVENT packet that carries `event` in namespace /chat, and the ACK packet answering `id`.
Packet EventPacket(const ChatEvent& event);
Packet AckPacket(uint64_t id, boost::json::array args);

// The packets of a namespace connection: the CONNECT answer {sid}, and the CONNECT_ERROR
// {message} that refuses one (the client's connect_error fires with that message).
Packet ConnectPacket(absl::string_view nsp, absl::string_view sid);
Packet ConnectErrorPacket(absl::string_view nsp, absl::string_view message);

}  // namespace parley::edge::socket_io
