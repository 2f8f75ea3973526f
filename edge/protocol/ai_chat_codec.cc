#include "edge/protocol/ai_chat_codec.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "common/overloaded.h"

namespace parley::edge::ai_chat {
namespace {

namespace json = boost::json;

using ::parley::common::Overloaded;

ErrorEvent Invalid(ErrorCode code, std::string message) {
  return ErrorEvent{code, std::move(message), ""};
}

json::string_view View(std::string_view text) {
  return json::string_view(text.data(), text.size());
}

std::string TypeOnly(json::string_view type) {
  json::object frame;
  frame["type"] = type;
  return json::serialize(frame);
}

}  // namespace

std::variant<Command, ErrorEvent> DecodeFrame(std::string_view frame) {
  boost::system::error_code ec;
  json::value value = json::parse(View(frame), ec);
  if (ec) {
    return Invalid(ErrorCode::kInvalidJson, "frame is not valid JSON");
  }
  const json::object* object = value.if_object();
  if (object == nullptr) {
    return Invalid(ErrorCode::kInvalidFrame, "frame must be a JSON object");
  }
  const json::value* type = object->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    return Invalid(ErrorCode::kInvalidFrame, "frame needs a string \"type\"");
  }
  const json::string_view name = type->get_string();
  if (name == "ping") {
    return Ping{};
  }
  if (name != "chat") {
    return Invalid(
        ErrorCode::kUnknownType,
        absl::StrCat("unknown frame type \"", absl::string_view(name.data(), name.size()), "\""));
  }
  SendMessage message;
  const json::value* text = object->if_contains("message");
  if (text == nullptr || !text->is_string() || text->get_string().empty()) {
    return Invalid(ErrorCode::kInvalidFrame, "\"chat\" needs a non-empty string \"message\"");
  }
  message.content = std::string(text->get_string());
  if (const json::value* model = object->if_contains("model");
      model != nullptr && !model->is_null()) {
    if (!model->is_string()) {
      return Invalid(ErrorCode::kInvalidFrame, "\"model\" must be a string");
    }
    message.model = std::string(model->get_string());
  }
  return message;
}

std::string ChunkFrame(std::string_view content) {
  json::object frame;
  frame["type"] = "chunk";
  frame["content"] = View(content);
  return json::serialize(frame);
}

std::string DoneFrame() { return TypeOnly("done"); }

std::string ErrorFrame(std::string_view message) {
  json::object frame;
  frame["type"] = "error";
  frame["message"] = View(message);
  return json::serialize(frame);
}

std::string PongFrame() { return TypeOnly("pong"); }

void AiChatEncoder::Finish(const std::string& message_id, std::vector<std::string>& frames) {
  auto it = replies_.find(message_id);
  if (it == replies_.end()) {
    return;
  }
  if (std::string rest = it->second.Finish(); !rest.empty()) {
    frames.push_back(ChunkFrame(rest));
  }
  replies_.erase(it);
}

std::vector<std::string> AiChatEncoder::Encode(const Event& event) {
  std::vector<std::string> frames;
  std::visit(Overloaded{
                 [&](const StreamStart& start) { replies_[start.message_id]; },
                 [&](const StreamToken& token) {
                   // A chunk that is only the start of a possible "<script" waits for the next.
                   std::string content = replies_[token.message_id].Feed(token.token);
                   if (!content.empty()) {
                     frames.push_back(ChunkFrame(content));
                   }
                 },
                 [&](const StreamComplete& complete) {
                   Finish(complete.message_id, frames);
                   frames.push_back(DoneFrame());
                 },
                 [&](const StreamInterrupted& interrupted) {
                   Finish(interrupted.message_id, frames);
                   frames.push_back(ErrorFrame(interrupted.message));
                 },
                 [&](const StreamCancelled& cancelled) {
                   Finish(cancelled.message_id, frames);
                   frames.push_back(DoneFrame());
                 },
                 [&](const ErrorEvent& error) { frames.push_back(ErrorFrame(error.message)); },
                 [&](const Pong&) { frames.push_back(PongFrame()); },
                 // The dialect has no frame for acks, heartbeats, reasoning, reads or rooms.
                 [](const auto&) {},
             },
             event);
  return frames;
}

}  // namespace parley::edge::ai_chat
