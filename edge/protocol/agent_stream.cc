#include "edge/protocol/agent_stream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "common/overloaded.h"

namespace parley::edge {
namespace {

namespace json = boost::json;

using ::parley::common::Overloaded;

json::string_view Json(absl::string_view text) {
  return json::string_view(text.data(), text.size());
}

std::string Frame(absl::string_view type, json::object fields = {}) {
  json::object frame;
  frame["type"] = Json(type);
  for (auto& field : fields) {
    frame[field.key()] = std::move(field.value());
  }
  return json::serialize(frame);
}

std::string Progress(absl::string_view stage, absl::string_view message) {
  return Frame("progress", {{"stage", Json(stage)}, {"message", Json(message)}});
}

constexpr int64_t kStartPosition = 0;
constexpr int64_t kStoredPosition = 1;
constexpr int64_t kGeneratingPosition = 2;
constexpr absl::string_view kStoredMessage = "Question stored";
constexpr absl::string_view kGeneratingMessage = "Generating the answer";

}  // namespace

AgentStream::AgentStream(std::string reply_id, std::string conversation_id, int64_t after_position)
    : after_position_(after_position),
      // Text units are kTextOffset after their splitter positions.
      splitter_(std::max<int64_t>(0, after_position - kTextOffset)),
      reply_id_(std::move(reply_id)),
      conversation_id_(std::move(conversation_id)) {}

AgentStream AgentStream::Continuing(std::string reply_id, std::string conversation_id,
                                    int64_t after_position) {
  return AgentStream(std::move(reply_id), std::move(conversation_id), after_position);
}

std::vector<AgentEvent> AgentStream::Opening() const {
  if (!after_position_.has_value()) {
    return {AgentEvent{"start", Frame("start", {{"message", "Starting..."}}), kStartPosition}};
  }
  AgentOutput out;
  Add(out, "progress", Progress("stored", kStoredMessage), kStoredPosition);
  Add(out, "progress", Progress("generating", kGeneratingMessage), kGeneratingPosition);
  return std::move(out.events);
}

void AgentStream::Add(AgentOutput& out, absl::string_view type, std::string json, int64_t position,
                      bool even_if_seen) const {
  // A continuation skips what the client has, but always says where the stream ends.
  if (after_position_.has_value() && position <= *after_position_ && !even_if_seen &&
      type != "stream_end") {
    return;
  }
  out.events.push_back(AgentEvent{type, std::move(json), position});
}

void AgentStream::AddPieces(AgentOutput& out, std::vector<FenceSplitter::Piece> pieces) const {
  for (FenceSplitter::Piece& piece : pieces) {
    switch (piece.kind) {
      case FenceSplitter::Kind::kProse:
        Add(out, "analysis_chunk", Frame("analysis_chunk", {{"chunk", Json(piece.text)}}),
            piece.position + kTextOffset);
        break;
      case FenceSplitter::Kind::kCode:
        Add(out, "code_chunk", Frame("code_chunk", {{"chunk", Json(piece.text)}}),
            piece.position + kTextOffset);
        break;
      case FenceSplitter::Kind::kCodeBlock:
        Add(out, "code_generated", Frame("code_generated", {{"code", Json(piece.text)}}),
            piece.position + kTextOffset);
        break;
    }
  }
}

void AgentStream::End(AgentOutput& out,
                      std::vector<std::pair<absl::string_view, std::string>> ending, CloseCode code,
                      bool even_if_seen) {
  if (ended_) {
    return;
  }
  ended_ = true;
  AddPieces(out, splitter_.Finish());
  // The ending comes after every position Finish() can give.
  int64_t position = splitter_.consumed() + FenceSplitter::kBlockAtEndOffset + kTextOffset + 1;
  for (auto& [type, frame] : ending) {
    Add(out, type, std::move(frame), position++, even_if_seen);
  }
  Add(out, "stream_end", Frame("stream_end"), position);
  out.close_code = code;
}

AgentOutput AgentStream::Map(const Event& event) {
  AgentOutput out;
  if (ended_) {
    return out;
  }
  std::visit(
      Overloaded{
          [&](const Ack& ack) {
            conversation_id_ = ack.conversation_id;
            Add(out, "progress", Progress("stored", kStoredMessage), kStoredPosition);
          },
          [&](const StreamStart& start) {
            reply_id_ = start.message_id;
            if (!start.conversation_id.empty()) {
              conversation_id_ = start.conversation_id;
            }
            Add(out, "progress",
                Progress("generating", start.model.empty() ? std::string(kGeneratingMessage)
                                                           : absl::StrCat(kGeneratingMessage,
                                                                          " with ", start.model)),
                kGeneratingPosition);
          },
          [&](const StreamReasoning& reasoning) {
            Add(out, "chain_of_thought",
                Frame("chain_of_thought", {{"content", Json(reasoning.text)}}),
                splitter_.consumed() + kTextOffset);
          },
          [&](const StreamToken& token) {
            if (!reply_id_.empty() && token.message_id != reply_id_) {
              return;
            }
            answer_ += token.token;
            AddPieces(out, splitter_.Feed(token.token));
          },
          [&](const Heartbeat&) { out.keep_alive = true; },
          [&](const StreamComplete& complete) {
            json::object usage;
            usage["promptTokens"] = complete.prompt_tokens;
            usage["completionTokens"] = complete.completion_tokens;
            json::object data;
            data["conversationId"] = Json(conversation_id_);
            data["messageId"] = Json(reply_id_.empty() ? complete.message_id : reply_id_);
            data["answer"] = Json(answer_);
            data["finishReason"] = Json(complete.finish_reason);
            data["usage"] = std::move(usage);
            std::vector<std::pair<absl::string_view, std::string>> ending;
            ending.emplace_back("progress", Progress("done", "Answer complete"));
            ending.emplace_back("complete", Frame("complete", {{"data", std::move(data)}}));
            End(out, std::move(ending), CloseCode::kNormal);
          },
          [&](const StreamCancelled&) {
            std::vector<std::pair<absl::string_view, std::string>> ending;
            ending.emplace_back("error", AgentErrorEvent("the reply was stopped").json);
            End(out, std::move(ending), CloseCode::kNormal);
          },
          [&](const StreamInterrupted& interrupted) {
            std::vector<std::pair<absl::string_view, std::string>> ending;
            ending.emplace_back("error", AgentErrorEvent(interrupted.message).json);
            End(out, std::move(ending), CloseCode::kInternalError);
          },
          [&](const ErrorEvent& error) {
            std::vector<std::pair<absl::string_view, std::string>> ending;
            ending.emplace_back("error", AgentErrorEvent(error.message).json);
            // A failure is not part of the stored reply: news to a continuation too.
            End(out, std::move(ending), AgentCloseCode(error.code), /*even_if_seen=*/true);
          },
          [&](const Resumed& resumed) {
            if (!resumed.recovered) {
              // Gone between the request and its continuation (deleted, say).
              std::vector<std::pair<absl::string_view, std::string>> ending;
              ending.emplace_back("error", AgentErrorEvent("the reply cannot be found").json);
              // Its text is unknown, so its positions are too: the error is news whatever the
              // client had.
              End(out, std::move(ending), CloseCode::kPolicy, /*even_if_seen=*/true);
            }
          },
          // Nothing else belongs to a one-turn connection.
          [](const auto&) {},
      },
      event);
  return out;
}

AgentEvent AgentErrorEvent(absl::string_view message) {
  return AgentEvent{"error", Frame("error", {{"message", Json(message)}}), 0};
}

CloseCode AgentCloseCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kRateLimited:
    case ErrorCode::kTooManyTurns:
      return CloseCode::kTryAgainLater;
    case ErrorCode::kShuttingDown:
      return CloseCode::kGoingAway;
    case ErrorCode::kInferenceUnavailable:
    case ErrorCode::kStorageUnavailable:
    case ErrorCode::kDeadlineExceeded:
    case ErrorCode::kInternal:
      return CloseCode::kInternalError;
    case ErrorCode::kInvalidJson:
    case ErrorCode::kInvalidFrame:
    case ErrorCode::kUnknownType:
    case ErrorCode::kNotFound:
    case ErrorCode::kUnauthenticated:
      return CloseCode::kPolicy;
    case ErrorCode::kTokenExpired:
      return CloseCode::kTokenExpired;
  }
  return CloseCode::kInternalError;
}

}  // namespace parley::edge
