#include "edge/protocol/copilot_codec.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "common/overloaded.h"

namespace parley::edge::copilot {
namespace {

namespace json = boost::json;

using ::parley::common::Overloaded;

ErrorEvent Invalid(ErrorCode code, std::string message) {
  return ErrorEvent{code, std::move(message), ""};
}

json::string_view View(std::string_view text) {
  return json::string_view(text.data(), text.size());
}

json::object Frame(json::string_view type, int64_t timestamp_ms) {
  json::object frame;
  frame["type"] = type;
  frame["timestamp"] = timestamp_ms;
  return frame;
}

json::object CompletionMetadata(const ReplySummary& reply) {
  json::object metadata;
  metadata["model"] = View(reply.model);
  metadata["tokenCount"] = reply.completion_tokens;
  metadata["actionSuccess"] = true;
  metadata["messageId"] = View(reply.message_id);
  metadata["finishReason"] = View(reply.finish_reason);
  return metadata;
}

}  // namespace

std::variant<CopilotRequest, ErrorEvent> DecodeFrame(std::string_view frame) {
  boost::system::error_code ec;
  json::value value = json::parse(View(frame), ec);
  if (ec) {
    return Invalid(ErrorCode::kInvalidJson, "frame is not valid JSON");
  }
  const json::object* object = value.if_object();
  if (object == nullptr) {
    return Invalid(ErrorCode::kInvalidFrame, "frame must be a JSON object");
  }
  const json::value* action = object->if_contains("action");
  if (action == nullptr || !action->is_string()) {
    return Invalid(ErrorCode::kInvalidFrame, "frame needs a string \"action\"");
  }
  if (action->get_string() != "message") {
    const json::string_view name = action->get_string();
    return Invalid(ErrorCode::kUnknownType,
                   absl::StrCat("unknown action \"", absl::string_view(name.data(), name.size()),
                                "\"; the one action is \"message\""));
  }
  CopilotRequest request;
  const json::value* message = object->if_contains("message");
  if (message == nullptr || !message->is_string() || message->get_string().empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"message\" needs a non-empty string \"message\"");
  }
  request.message.content = std::string(message->get_string());
  if (const json::value* id = object->if_contains("conversationId");
      id != nullptr && !id->is_null()) {
    if (!id->is_string()) {
      return Invalid(ErrorCode::kInvalidFrame, "\"conversationId\" must be a string");
    }
    request.message.conversation_id = std::string(id->get_string());
  }
  if (const json::value* streaming = object->if_contains("streaming");
      streaming != nullptr && !streaming->is_null()) {
    if (!streaming->is_bool()) {
      return Invalid(ErrorCode::kInvalidFrame, "\"streaming\" must be a boolean");
    }
    request.streaming = streaming->get_bool();
  }
  return request;
}

std::string AcknowledgmentFrame(int64_t timestamp_ms) {
  json::object frame = Frame("acknowledgment", timestamp_ms);
  frame["message"] = View(kAcknowledgmentText);
  return json::serialize(frame);
}

std::string TypingFrame(int64_t timestamp_ms) {
  return json::serialize(Frame("typing", timestamp_ms));
}

std::string StreamStartFrame(std::string_view conversation_id, std::string_view message_id,
                             std::string_view model, int64_t timestamp_ms) {
  json::object frame = Frame("stream_start", timestamp_ms);
  frame["conversationId"] = View(conversation_id);
  json::object metadata;
  metadata["model"] = View(model);
  metadata["messageId"] = View(message_id);
  frame["metadata"] = std::move(metadata);
  return json::serialize(frame);
}

std::string StreamTokenFrame(std::string_view token, std::string_view conversation_id,
                             int64_t timestamp_ms) {
  json::object frame = Frame("stream_token", timestamp_ms);
  frame["token"] = View(token);
  frame["conversationId"] = View(conversation_id);
  return json::serialize(frame);
}

std::string StreamCompleteFrame(const ReplySummary& reply, int64_t timestamp_ms) {
  json::object frame = Frame("stream_complete", timestamp_ms);
  frame["conversationId"] = View(reply.conversation_id);
  frame["metadata"] = CompletionMetadata(reply);
  return json::serialize(frame);
}

std::string MessageFrame(std::string_view content, const ReplySummary& reply,
                         int64_t timestamp_ms) {
  json::object frame = Frame("message", timestamp_ms);
  frame["content"] = View(content);
  frame["conversationId"] = View(reply.conversation_id);
  frame["metadata"] = CompletionMetadata(reply);
  return json::serialize(frame);
}

std::string StreamInterruptedFrame(std::string_view conversation_id, std::string_view error,
                                   std::string_view partial_response, int64_t timestamp_ms) {
  json::object frame = Frame("stream_interrupted", timestamp_ms);
  frame["conversationId"] = View(conversation_id);
  frame["error"] = View(error);
  frame["partialResponse"] = View(partial_response);
  return json::serialize(frame);
}

std::string SuggestionsFrame(const std::vector<std::string>& suggestions,
                             std::string_view conversation_id, int64_t timestamp_ms) {
  json::object frame = Frame("suggestions", timestamp_ms);
  json::array list;
  for (const std::string& suggestion : suggestions) {
    list.emplace_back(View(suggestion));
  }
  frame["suggestions"] = std::move(list);
  frame["conversationId"] = View(conversation_id);
  return json::serialize(frame);
}

std::string ErrorFrame(std::string_view error, int64_t timestamp_ms) {
  json::object frame = Frame("error", timestamp_ms);
  frame["error"] = View(error);
  return json::serialize(frame);
}

void CopilotEncoder::Expect(std::string request_id, bool streaming, std::string question) {
  Reply reply;
  reply.request_id = std::move(request_id);
  reply.streaming = streaming;
  reply.question = std::move(question);
  replies_.push_back(std::move(reply));
}

CopilotEncoder::Reply* CopilotEncoder::ByRequest(const std::string& request_id) {
  auto it = std::find_if(replies_.begin(), replies_.end(),
                         [&](const Reply& reply) { return reply.request_id == request_id; });
  return it == replies_.end() ? nullptr : &*it;
}

CopilotEncoder::Reply* CopilotEncoder::ByMessage(const std::string& message_id) {
  auto it = std::find_if(replies_.begin(), replies_.end(),
                         [&](const Reply& reply) { return reply.message_id == message_id; });
  return it == replies_.end() ? nullptr : &*it;
}

void CopilotEncoder::Forget(const Reply* reply) {
  std::erase_if(replies_, [reply](const Reply& candidate) { return &candidate == reply; });
}

CopilotEncoder::Output CopilotEncoder::Encode(const Event& event, int64_t timestamp_ms) {
  Output out;
  std::visit(
      Overloaded{
          [&](const Ack& ack) {
            if (Reply* reply = ByRequest(ack.id)) {
              reply->conversation_id = ack.conversation_id;
              reply->acked = true;
            }
            out.frames.push_back(AcknowledgmentFrame(timestamp_ms));
            out.frames.push_back(TypingFrame(timestamp_ms));
          },
          [&](const StreamStart& start) {
            // A reply names its conversation, not the request: it belongs to the oldest acked
            // request of that conversation still waiting for one.
            auto it = std::find_if(replies_.begin(), replies_.end(), [&](const Reply& reply) {
              return reply.acked && reply.message_id.empty() &&
                     reply.conversation_id == start.conversation_id;
            });
            if (it == replies_.end()) {
              return;
            }
            it->message_id = start.message_id;
            it->model = start.model;
            if (it->streaming) {
              out.frames.push_back(StreamStartFrame(start.conversation_id, start.message_id,
                                                    start.model, timestamp_ms));
            }
          },
          [&](const StreamToken& token) {
            Reply* reply = ByMessage(token.message_id);
            if (reply == nullptr) {
              return;
            }
            reply->text += token.token;
            if (reply->streaming) {
              out.frames.push_back(
                  StreamTokenFrame(token.token, reply->conversation_id, timestamp_ms));
            }
          },
          [&](const StreamComplete& complete) {
            Reply* reply = ByMessage(complete.message_id);
            if (reply == nullptr) {
              return;
            }
            if (!complete.model.empty()) {
              reply->model = complete.model;
            }
            const ReplySummary summary{reply->conversation_id, reply->message_id, reply->model,
                                       complete.finish_reason, complete.completion_tokens};
            out.frames.push_back(reply->streaming
                                     ? StreamCompleteFrame(summary, timestamp_ms)
                                     : MessageFrame(reply->text, summary, timestamp_ms));
            out.completed = CompletedReply{reply->conversation_id, reply->message_id, reply->model,
                                           std::move(reply->question), std::move(reply->text)};
            Forget(reply);
          },
          [&](const StreamInterrupted& interrupted) {
            Reply* reply = ByMessage(interrupted.message_id);
            if (reply == nullptr) {
              return;
            }
            out.frames.push_back(StreamInterruptedFrame(reply->conversation_id, interrupted.message,
                                                        interrupted.partial_response,
                                                        timestamp_ms));
            Forget(reply);
          },
          [&](const StreamCancelled& cancelled) {
            Reply* reply = ByMessage(cancelled.message_id);
            if (reply == nullptr) {
              return;
            }
            out.frames.push_back(StreamInterruptedFrame(
                reply->conversation_id, "the reply was cancelled", reply->text, timestamp_ms));
            Forget(reply);
          },
          [&](const ErrorEvent& error) {
            if (!error.id.empty()) {
              if (Reply* reply = ByRequest(error.id)) {
                Forget(reply);
              }
            }
            out.frames.push_back(ErrorFrame(error.message, timestamp_ms));
          },
          // The dialect has no frame for the rest: pongs (it sends no ping), heartbeats and
          // reasoning, and the native protocol's reads and rooms.
          [](const auto&) {},
      },
      event);
  return out;
}

}  // namespace parley::edge::copilot
