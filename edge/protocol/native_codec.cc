#include "edge/protocol/native_codec.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"

namespace parley::edge {
namespace {

namespace json = boost::json;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};

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
  return message;
}

json::object WithType(json::string_view type) {
  json::object object;
  object["type"] = type;
  return object;
}

json::string_view View(const std::string& text) { return json::string_view(text); }

}  // namespace

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
    GetHistory history;
    if (!OptionalString(*object, "conversationId", history.conversation_id) ||
        history.conversation_id.empty()) {
      return Invalid(ErrorCode::kInvalidFrame,
                     "\"history\" needs a non-empty string \"conversationId\"", id);
    }
    return history;
  }
  return Invalid(
      ErrorCode::kUnknownType,
      absl::StrCat("unknown frame type \"", absl::string_view(name.data(), name.size()), "\""), id);
}

std::string NativeCodec::Encode(const Event& event) const {
  json::object out = std::visit(Overloaded{
                                    [](const Ack& ack) {
                                      json::object o = WithType("ack");
                                      o["id"] = View(ack.id);
                                      o["conversationId"] = View(ack.conversation_id);
                                      o["messageId"] = View(ack.message_id);
                                      return o;
                                    },
                                    [](const StreamStart& start) {
                                      json::object o = WithType("stream_start");
                                      o["conversationId"] = View(start.conversation_id);
                                      o["messageId"] = View(start.message_id);
                                      o["model"] = View(start.model);
                                      return o;
                                    },
                                    [](const StreamToken& token) {
                                      json::object o = WithType("stream_token");
                                      o["messageId"] = View(token.message_id);
                                      o["seq"] = token.seq;
                                      o["token"] = View(token.token);
                                      return o;
                                    },
                                    [](const StreamComplete& complete) {
                                      json::object o = WithType("stream_complete");
                                      o["messageId"] = View(complete.message_id);
                                      o["lastSeq"] = complete.last_seq;
                                      o["finishReason"] = View(complete.finish_reason);
                                      json::object usage;
                                      usage["promptTokens"] = complete.prompt_tokens;
                                      usage["completionTokens"] = complete.completion_tokens;
                                      o["usage"] = std::move(usage);
                                      return o;
                                    },
                                    [](const ErrorEvent& error) {
                                      json::object o = WithType("error");
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
                                    [](const Pong&) { return WithType("pong"); },
                                    [](const StreamCancelled& cancelled) {
                                      json::object o = WithType("stream_cancelled");
                                      o["messageId"] = View(cancelled.message_id);
                                      o["lastSeq"] = cancelled.last_seq;
                                      return o;
                                    },
                                    [](const Heartbeat& heartbeat) {
                                      json::object o = WithType("heartbeat");
                                      o["messageId"] = View(heartbeat.message_id);
                                      return o;
                                    },
                                    [](const Resumed& resumed) {
                                      json::object o = WithType("resumed");
                                      o["messageId"] = View(resumed.message_id);
                                      o["recovered"] = resumed.recovered;
                                      return o;
                                    },
                                    [](const StreamInterrupted& interrupted) {
                                      json::object o = WithType("stream_interrupted");
                                      o["messageId"] = View(interrupted.message_id);
                                      o["lastSeq"] = interrupted.last_seq;
                                      o["error"] = View(interrupted.error);
                                      o["message"] = View(interrupted.message);
                                      o["partialResponse"] = View(interrupted.partial_response);
                                      return o;
                                    },
                                    [](const History& history) {
                                      json::object o = WithType("history");
                                      o["conversationId"] = View(history.conversation_id);
                                      json::array messages;
                                      messages.reserve(history.messages.size());
                                      for (const HistoryMessage& message : history.messages) {
                                        json::object m;
                                        m["id"] = View(message.id);
                                        m["role"] = View(message.role);
                                        m["content"] = View(message.content);
                                        m["status"] = View(message.status);
                                        messages.push_back(std::move(m));
                                      }
                                      o["messages"] = std::move(messages);
                                      return o;
                                    },
                                },
                                event);
  return json::serialize(out);
}

}  // namespace parley::edge
