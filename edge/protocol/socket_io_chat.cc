#include "edge/protocol/socket_io_chat.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/json/value.hpp"

namespace parley::edge::socket_io {
namespace {

namespace json = boost::json;

json::string_view Json(absl::string_view text) {
  return json::string_view(text.data(), text.size());
}

// The string field `key`, "" when absent or null; false when it holds anything else.
bool OptionalString(const json::object& payload, absl::string_view key, std::string& out) {
  const json::value* value = payload.if_contains(Json(key));
  if (value == nullptr || value->is_null()) {
    return true;
  }
  if (!value->is_string()) {
    return false;
  }
  out = std::string(value->get_string());
  return true;
}

std::variant<Command, ChatEventError> Refuse(std::string conversation_id, std::string message) {
  return ChatEventError{std::move(conversation_id), std::move(message)};
}

// chat:join, chat:leave and chat:typing all name one conversation.
bool RequireConversation(const json::object& payload, absl::string_view event,
                         std::string& conversation_id, std::string& error) {
  if (OptionalString(payload, "conversationId", conversation_id) && !conversation_id.empty()) {
    return true;
  }
  error = absl::StrCat("\"", event, "\" needs a non-empty string \"conversationId\"");
  return false;
}

}  // namespace

std::variant<Command, ChatEventError> DecodeChatEvent(const json::array& args) {
  if (args.empty() || !args.front().is_string()) {
    return Refuse("", "an event needs a name");
  }
  const std::string name(args.front().get_string());
  if (args.size() < 2 || !args[1].is_object()) {
    return Refuse("", absl::StrCat("\"", name, "\" needs an object argument"));
  }
  const json::object& payload = args[1].get_object();
  std::string conversation_id;
  std::string error;
  if (name == "chat:send") {
    SendMessage send;
    if (!OptionalString(payload, "conversationId", send.conversation_id)) {
      return Refuse("", "\"conversationId\" must be a string");
    }
    if (!OptionalString(payload, "content", send.content) || send.content.empty()) {
      return Refuse(send.conversation_id, "\"chat:send\" needs a non-empty string \"content\"");
    }
    std::string role;
    if (!OptionalString(payload, "role", role) || !(role.empty() || role == "user")) {
      return Refuse(send.conversation_id, "\"role\" must be \"user\"");
    }
    return Command(std::move(send));
  }
  if (name == "chat:typing") {
    if (!RequireConversation(payload, name, conversation_id, error)) {
      return Refuse("", std::move(error));
    }
    Typing typing;
    typing.conversation_id = std::move(conversation_id);
    if (const json::value* is_typing = payload.if_contains("isTyping");
        is_typing != nullptr && !is_typing->is_null()) {
      if (!is_typing->is_bool()) {
        return Refuse(typing.conversation_id, "\"isTyping\" must be true or false");
      }
      typing.is_typing = is_typing->get_bool();
    }
    return Command(std::move(typing));
  }
  if (name == "chat:join") {
    if (!RequireConversation(payload, name, conversation_id, error)) {
      return Refuse("", std::move(error));
    }
    return Command(JoinConversation{std::move(conversation_id)});
  }
  if (name == "chat:leave") {
    if (!RequireConversation(payload, name, conversation_id, error)) {
      return Refuse("", std::move(error));
    }
    return Command(LeaveConversation{std::move(conversation_id)});
  }
  std::string named;
  OptionalString(payload, "conversationId", named);
  return Refuse(std::move(named), absl::StrCat("unknown event \"", name, "\""));
}

ChatEvent MessageEvent(const ChatMessage& message) {
  return ChatEvent{
      "chat:message",
      json::object{{"conversationId", message.conversation_id},
                   {"message", json::object{{"id", message.id},
                                            {"content", message.content},
                                            {"role", message.role},
                                            {"conversationId", message.conversation_id},
                                            {"createdAt", message.created_at}}}}};
}

ChatEvent ThinkingEvent(absl::string_view conversation_id) {
  return ChatEvent{"chat:thinking", json::object{{"conversationId", Json(conversation_id)},
                                                 {"status", "processing"}}};
}

ChatEvent StreamingEvent(absl::string_view conversation_id, absl::string_view message_id,
                         absl::string_view chunk, bool is_complete) {
  return ChatEvent{"chat:streaming", json::object{{"conversationId", Json(conversation_id)},
                                                  {"messageId", Json(message_id)},
                                                  {"chunk", Json(chunk)},
                                                  {"isComplete", is_complete}}};
}

ChatEvent CompleteEvent(absl::string_view conversation_id, absl::string_view message_id) {
  return ChatEvent{"chat:complete", json::object{{"conversationId", Json(conversation_id)},
                                                 {"messageId", Json(message_id)}}};
}

ChatEvent ChatErrorEvent(absl::string_view conversation_id, absl::string_view error) {
  return ChatEvent{"chat:error",
                   json::object{{"conversationId", Json(conversation_id)}, {"error", Json(error)}}};
}

ChatEvent JoinedEvent(absl::string_view conversation_id) {
  return ChatEvent{"chat:joined", json::object{{"conversationId", Json(conversation_id)}}};
}

ChatEvent UserJoinedEvent(absl::string_view user_id, absl::string_view username) {
  return ChatEvent{"chat:user-joined",
                   json::object{{"userId", Json(user_id)}, {"username", Json(username)}}};
}

ChatEvent UserLeftEvent(absl::string_view user_id, absl::string_view username) {
  return ChatEvent{"chat:user-left",
                   json::object{{"userId", Json(user_id)}, {"username", Json(username)}}};
}

ChatEvent UserTypingEvent(absl::string_view user_id, absl::string_view username, bool is_typing) {
  return ChatEvent{"chat:user-typing", json::object{{"userId", Json(user_id)},
                                                    {"username", Json(username)},
                                                    {"isTyping", is_typing}}};
}

std::string ErrorText(const ErrorEvent& error) {
  if (!error.message.empty()) {
    return error.message;
  }
  return std::string(ErrorCodeName(error.code));
}

json::array AckOk(absl::string_view message_id) {
  return json::array{json::object{{"ok", true}, {"messageId", Json(message_id)}}};
}

json::array AckError(absl::string_view error) {
  return json::array{json::object{{"ok", false}, {"error", Json(error)}}};
}

Packet EventPacket(const ChatEvent& event) {
  Packet packet;
  packet.type = PacketType::kEvent;
  packet.nsp = std::string(kChatNamespace);
  packet.data = json::array{json::value(event.name), json::value(event.payload)};
  return packet;
}

Packet AckPacket(uint64_t id, json::array args) {
  Packet packet;
  packet.type = PacketType::kAck;
  packet.nsp = std::string(kChatNamespace);
  packet.id = id;
  packet.data = json::value(std::move(args));
  return packet;
}

Packet ConnectPacket(absl::string_view nsp, absl::string_view sid) {
  Packet packet;
  packet.type = PacketType::kConnect;
  packet.nsp = std::string(nsp);
  packet.data = json::object{{"sid", Json(sid)}};
  return packet;
}

Packet ConnectErrorPacket(absl::string_view nsp, absl::string_view message) {
  Packet packet;
  packet.type = PacketType::kConnectError;
  packet.nsp = std::string(nsp);
  packet.data = json::object{{"message", Json(message)}};
  return packet;
}

}  // namespace parley::edge::socket_io
