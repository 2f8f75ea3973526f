#include "edge/protocol/native_codec.h"

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "boost/json/array.hpp"
#include "boost/json/monotonic_resource.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "common/overloaded.h"

namespace parley::edge {
namespace {

namespace json = boost::json;

using ::parley::common::Overloaded;

ErrorEvent Invalid(ErrorCode code, std::string message, std::string id = "") {
  return ErrorEvent{code, std::move(message), std::move(id)};
}

// Reads an optional string field: absent and null are empty; any other type is an error.
bool OptionalString(const json::object& object, json::string_view key, std::string& out) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) {
    return true;
  }
  if (!value->is_string()) {
    return false;
  }
  out = std::string(value->get_string());
  return true;
}

// Reads an optional non-negative integer field: absent and null leave `out` unchanged.
bool OptionalCount(const json::object& object, json::string_view key, int32_t& out) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) {
    return true;
  }
  if (!value->is_int64() || value->get_int64() < 0 || value->get_int64() > INT32_MAX) {
    return false;
  }
  out = static_cast<int32_t>(value->get_int64());
  return true;
}

// A required non-empty string field, or the error that names it.
std::optional<ErrorEvent> RequireString(const json::object& object, json::string_view type,
                                        json::string_view key, const std::string& id,
                                        std::string& out) {
  if (OptionalString(object, key, out) && !out.empty()) {
    return std::nullopt;
  }
  return Invalid(ErrorCode::kInvalidFrame,
                 absl::StrCat("\"", absl::string_view(type.data(), type.size()),
                              "\" needs a non-empty string \"",
                              absl::string_view(key.data(), key.size()), "\""),
                 id);
}

std::variant<Command, ErrorEvent> DecodeRegenerate(const json::object& object, std::string id) {
  RegenerateReply regenerate;
  regenerate.id = std::move(id);
  if (regenerate.id.empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"regenerate\" needs a non-empty string \"id\"");
  }
  if (auto error =
          RequireString(object, "regenerate", "messageId", regenerate.id, regenerate.message_id)) {
    return *error;
  }
  if (!OptionalString(object, "model", regenerate.model)) {
    return Invalid(ErrorCode::kInvalidFrame, "\"model\" must be a string", regenerate.id);
  }
  return regenerate;
}

std::variant<Command, ErrorEvent> DecodeEdit(const json::object& object, std::string id) {
  EditMessage edit;
  edit.id = std::move(id);
  if (edit.id.empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"edit\" needs a non-empty string \"id\"");
  }
  if (auto error = RequireString(object, "edit", "messageId", edit.id, edit.message_id)) {
    return *error;
  }
  if (auto error = RequireString(object, "edit", "content", edit.id, edit.content)) {
    return *error;
  }
  if (!OptionalString(object, "model", edit.model)) {
    return Invalid(ErrorCode::kInvalidFrame, "\"model\" must be a string", edit.id);
  }
  return edit;
}

std::variant<Command, ErrorEvent> DecodeHistory(const json::object& object, const std::string& id) {
  GetHistory history;
  if (!OptionalString(object, "conversationId", history.conversation_id)) {
    return Invalid(ErrorCode::kInvalidFrame, "\"conversationId\" must be a string", id);
  }
  if (!history.conversation_id.empty()) {
    return history;
  }
  // Without a conversation, `history` lists the conversations themselves.
  ListConversations list;
  if (!OptionalString(object, "pageToken", list.page_token) ||
      !OptionalCount(object, "pageSize", list.page_size)) {
    return Invalid(ErrorCode::kInvalidFrame,
                   "\"pageToken\" must be a string and \"pageSize\" a non-negative integer", id);
  }
  return list;
}

std::variant<Command, ErrorEvent> DecodeMessages(const json::object& object,
                                                 const std::string& id) {
  ListMessages list;
  if (auto error = RequireString(object, "messages", "conversationId", id, list.conversation_id)) {
    return *error;
  }
  if (!OptionalString(object, "pageToken", list.page_token) ||
      !OptionalCount(object, "pageSize", list.page_size) ||
      !OptionalString(object, "leafMessageId", list.leaf_message_id)) {
    return Invalid(ErrorCode::kInvalidFrame,
                   "\"pageToken\" and \"leafMessageId\" must be strings and \"pageSize\" a "
                   "non-negative integer",
                   id);
  }
  return list;
}

std::variant<Command, ErrorEvent> DecodeTyping(const json::object& object, const std::string& id) {
  Typing typing;
  if (auto error = RequireString(object, "typing", "conversationId", id, typing.conversation_id)) {
    return *error;
  }
  if (const json::value* is_typing = object.if_contains("isTyping");
      is_typing != nullptr && !is_typing->is_null()) {
    if (!is_typing->is_bool()) {
      return Invalid(ErrorCode::kInvalidFrame, "\"isTyping\" must be a boolean", id);
    }
    typing.is_typing = is_typing->get_bool();
  }
  return typing;
}

std::variant<Command, ErrorEvent> DecodeMessage(const json::object& object, std::string id) {
  if (id.empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"message\" needs a non-empty string \"id\"");
  }
  SendMessage message;
  message.id = std::move(id);
  if (!OptionalString(object, "content", message.content) || message.content.empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"message\" needs a non-empty string \"content\"",
                   message.id);
  }
  if (!OptionalString(object, "conversationId", message.conversation_id)) {
    return Invalid(ErrorCode::kInvalidFrame, "\"conversationId\" must be a string", message.id);
  }
  if (!OptionalString(object, "model", message.model)) {
    return Invalid(ErrorCode::kInvalidFrame, "\"model\" must be a string", message.id);
  }
  if (!OptionalString(object, "parentId", message.parent_id)) {
    return Invalid(ErrorCode::kInvalidFrame, "\"parentId\" must be a string", message.id);
  }
  if (!message.parent_id.empty() && message.conversation_id.empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"parentId\" needs its \"conversationId\"",
                   message.id);
  }
  if (const json::value* deadline = object.if_contains("deadlineMs");
      deadline != nullptr && !deadline->is_null()) {
    if (!deadline->is_int64() || deadline->get_int64() <= 0) {
      return Invalid(ErrorCode::kInvalidFrame,
                     "\"deadlineMs\" must be a positive integer (milliseconds)", message.id);
    }
    message.deadline_ms = deadline->get_int64();
  }
  return message;
}

// Room for every field of the frames built on it, so that none grows its table.
constexpr size_t kFrameFields = 8;

json::object WithType(json::string_view type, const json::storage_ptr& storage) {
  json::object object(kFrameFields, storage);
  object["type"] = type;
  return object;
}

json::string_view View(const std::string& text) { return json::string_view(text); }

json::array MessagesJson(const std::vector<HistoryMessage>& messages) {
  json::array out;
  out.reserve(messages.size());
  for (const HistoryMessage& message : messages) {
    out.push_back(MessageJson(message));
  }
  return out;
}

json::object ConversationIdEvent(json::string_view type, const std::string& conversation_id,
                                 const json::storage_ptr& storage) {
  json::object o = WithType(type, storage);
  o["conversationId"] = View(conversation_id);
  return o;
}

}  // namespace

json::object MessageJson(const HistoryMessage& message) {
  json::object m;
  m["id"] = View(message.id);
  m["parentId"] = View(message.parent_id);
  m["role"] = View(message.role);
  m["content"] = View(message.content);
  m["status"] = View(message.status);
  m["model"] = View(message.model);
  m["finishReason"] = View(message.finish_reason);
  m["lastSeq"] = message.last_seq;
  m["createdAt"] = View(message.created_at);
  if (!message.sha256.empty()) {
    m["sha256"] = View(message.sha256);
  }
  return m;
}

json::object ConversationJson(const ConversationSummary& conversation) {
  json::object o{{"id", View(conversation.id)},
                 {"title", View(conversation.title)},
                 {"createdAt", View(conversation.created_at)},
                 {"updatedAt", View(conversation.updated_at)}};
  if (!conversation.client_conversation_id.empty()) {
    o["clientConversationId"] = View(conversation.client_conversation_id);
  }
  return o;
}

std::variant<Command, ErrorEvent> NativeCodec::Decode(std::string_view frame) const {
  boost::system::error_code ec;
  json::value value = json::parse(json::string_view(frame.data(), frame.size()), ec);
  if (ec) {
    return Invalid(ErrorCode::kInvalidJson, "frame is not valid JSON");
  }
  const json::object* object = value.if_object();
  if (object == nullptr) {
    return Invalid(ErrorCode::kInvalidFrame, "frame must be a JSON object");
  }
  // The id is echoed in any error so the client can tell which frame failed.
  std::string id;
  if (const json::value* id_value = object->if_contains("id");
      id_value != nullptr && id_value->is_string()) {
    id = std::string(id_value->get_string());
  }
  const json::value* type = object->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    return Invalid(ErrorCode::kInvalidFrame, "frame needs a string \"type\"", id);
  }
  const json::string_view name = type->get_string();
  if (name == "message") {
    return DecodeMessage(*object, std::move(id));
  }
  if (name == "ping") {
    return Ping{};
  }
  if (name == "auth") {
    RenewToken renew;
    if (auto error = RequireString(*object, name, "token", id, renew.token)) {
      return *error;
    }
    return renew;
  }
  if (name == "cancel") {
    CancelTurn cancel;
    if (!OptionalString(*object, "messageId", cancel.message_id) || cancel.message_id.empty()) {
      return Invalid(ErrorCode::kInvalidFrame, "\"cancel\" needs a non-empty string \"messageId\"",
                     id);
    }
    return cancel;
  }
  if (name == "resume") {
    ResumeStream resume;
    if (!OptionalString(*object, "messageId", resume.message_id) || resume.message_id.empty()) {
      return Invalid(ErrorCode::kInvalidFrame, "\"resume\" needs a non-empty string \"messageId\"",
                     id);
    }
    if (const json::value* last_seq = object->if_contains("lastSeq");
        last_seq != nullptr && !last_seq->is_null()) {
      if (!last_seq->is_int64() || last_seq->get_int64() < 0) {
        return Invalid(ErrorCode::kInvalidFrame, "\"lastSeq\" must be a non-negative integer", id);
      }
      resume.last_seq = last_seq->get_int64();
    }
    return resume;
  }
  if (name == "history") {
    return DecodeHistory(*object, id);
  }
  if (name == "messages") {
    return DecodeMessages(*object, id);
  }
  if (name == "regenerate") {
    return DecodeRegenerate(*object, std::move(id));
  }
  if (name == "edit") {
    return DecodeEdit(*object, std::move(id));
  }
  if (name == "typing") {
    return DecodeTyping(*object, id);
  }
  if (name == "join" || name == "leave") {
    std::string conversation_id;
    if (auto error = RequireString(*object, name, "conversationId", id, conversation_id)) {
      return *error;
    }
    if (name == "join") {
      return JoinConversation{std::move(conversation_id)};
    }
    return LeaveConversation{std::move(conversation_id)};
  }
  return Invalid(
      ErrorCode::kUnknownType,
      absl::StrCat("unknown frame type \"", absl::string_view(name.data(), name.size()), "\""), id);
}

std::string NativeCodec::Encode(const Event& event) const {
  if (std::holds_alternative<MemberJoined>(event) || std::holds_alternative<MemberLeft>(event)) {
    // The native protocol does not say who else views a conversation: no frame.
    return "";
  }
  // A frame is built in this buffer (and on the heap only past it): its text is all it allocates.
  unsigned char buffer[2048];
  json::monotonic_resource resource(buffer, sizeof(buffer));
  const json::storage_ptr storage(&resource);
  json::object out = std::visit(
      Overloaded{
          [&storage](const Ack& ack) {
            json::object o = WithType("ack", storage);
            o["id"] = View(ack.id);
            o["conversationId"] = View(ack.conversation_id);
            o["messageId"] = View(ack.message_id);
            return o;
          },
          [&storage](const StreamStart& start) {
            json::object o = WithType("stream_start", storage);
            o["conversationId"] = View(start.conversation_id);
            o["messageId"] = View(start.message_id);
            o["model"] = View(start.model);
            return o;
          },
          [&storage](const StreamToken& token) {
            json::object o = WithType("stream_token", storage);
            o["messageId"] = View(token.message_id);
            o["seq"] = token.seq;
            o["token"] = View(token.token);
            return o;
          },
          [&storage](const StreamComplete& complete) {
            json::object o = WithType("stream_complete", storage);
            o["messageId"] = View(complete.message_id);
            o["lastSeq"] = complete.last_seq;
            o["finishReason"] = View(complete.finish_reason);
            json::object usage(storage);
            usage["promptTokens"] = complete.prompt_tokens;
            usage["completionTokens"] = complete.completion_tokens;
            o["usage"] = std::move(usage);
            if (!complete.sha256.empty()) {
              o["sha256"] = View(complete.sha256);
            }
            return o;
          },
          [&storage](const ErrorEvent& error) {
            json::object o = WithType("error", storage);
            const absl::string_view code = ErrorCodeName(error.code);
            o["code"] = json::string_view(code.data(), code.size());
            o["message"] = View(error.message);
            if (!error.id.empty()) {
              o["id"] = View(error.id);
            }
            if (error.code == ErrorCode::kRateLimited) {
              o["retryAfterMs"] = error.retry_after_ms;
            }
            return o;
          },
          [&storage](const Pong&) { return WithType("pong", storage); },
          [&storage](const TokenRenewed& renewed) {
            json::object o = WithType("authenticated", storage);
            o["expiresAt"] = View(renewed.expires_at);
            return o;
          },
          [&storage](const StreamCancelled& cancelled) {
            json::object o = WithType("stream_cancelled", storage);
            o["messageId"] = View(cancelled.message_id);
            o["lastSeq"] = cancelled.last_seq;
            if (!cancelled.sha256.empty()) {
              o["sha256"] = View(cancelled.sha256);
            }
            return o;
          },
          [&storage](const Heartbeat& heartbeat) {
            json::object o = WithType("heartbeat", storage);
            o["messageId"] = View(heartbeat.message_id);
            return o;
          },
          [&storage](const Resumed& resumed) {
            json::object o = WithType("resumed", storage);
            o["messageId"] = View(resumed.message_id);
            o["recovered"] = resumed.recovered;
            return o;
          },
          [&storage](const StreamInterrupted& interrupted) {
            json::object o = WithType("stream_interrupted", storage);
            o["messageId"] = View(interrupted.message_id);
            o["lastSeq"] = interrupted.last_seq;
            o["error"] = View(interrupted.error);
            o["message"] = View(interrupted.message);
            o["partialResponse"] = View(interrupted.partial_response);
            if (!interrupted.sha256.empty()) {
              o["sha256"] = View(interrupted.sha256);
            }
            return o;
          },
          [&storage](const History& history) {
            json::object o = WithType("history", storage);
            o["conversationId"] = View(history.conversation_id);
            o["messages"] = MessagesJson(history.messages);
            return o;
          },
          [&storage](const MessagePage& page) {
            json::object o = WithType("messages", storage);
            o["conversationId"] = View(page.conversation_id);
            o["messages"] = MessagesJson(page.messages);
            o["nextPageToken"] = View(page.next_page_token);
            return o;
          },
          [&storage](const ConversationPage& page) {
            json::object o = WithType("history", storage);
            json::array conversations(storage);
            conversations.reserve(page.conversations.size());
            for (const ConversationSummary& c : page.conversations) {
              conversations.push_back(ConversationJson(c));
            }
            o["conversations"] = std::move(conversations);
            o["nextPageToken"] = View(page.next_page_token);
            return o;
          },
          [&storage](const Joined& joined) {
            return ConversationIdEvent("joined", joined.conversation_id, storage);
          },
          [&storage](const Left& left) {
            return ConversationIdEvent("left", left.conversation_id, storage);
          },
          [&storage](const StreamReasoning& reasoning) {
            json::object o = WithType("stream_reasoning", storage);
            o["messageId"] = View(reasoning.message_id);
            o["text"] = View(reasoning.text);
            return o;
          },
          [&storage](const MessageAdded& added) {
            json::object o = ConversationIdEvent("message_added", added.conversation_id, storage);
            o["message"] = MessageJson(added.message);
            return o;
          },
          [&storage](const TypingRelay& typing) {
            json::object o = ConversationIdEvent("typing", typing.conversation_id, storage);
            o["isTyping"] = typing.is_typing;
            return o;
          },
          [](const auto&) { return json::object{}; },
      },
      event);
  return json::serialize(out);
}

}  // namespace parley::edge
