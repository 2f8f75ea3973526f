#include "edge/protocol/messages.h"

#include "common/overloaded.h"

namespace parley::edge {
namespace {

using ::parley::common::Overloaded;

}  // namespace

absl::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidJson:
      return "invalid_json";
    case ErrorCode::kInvalidFrame:
      return "invalid_frame";
    case ErrorCode::kUnknownType:
      return "unknown_type";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kInferenceUnavailable:
      return "inference_unavailable";
    case ErrorCode::kStorageUnavailable:
      return "storage_unavailable";
    case ErrorCode::kShuttingDown:
      return "shutting_down";
    case ErrorCode::kInternal:
      return "internal";
    case ErrorCode::kRateLimited:
      return "rate_limited";
    case ErrorCode::kTooManyTurns:
      return "too_many_turns";
    case ErrorCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kTokenExpired:
      return "token_expired";
  }
  return "internal";
}

absl::string_view CommandName(const Command& command) {
  return std::visit(Overloaded{
                        [](const SendMessage&) { return absl::string_view("message"); },
                        [](const Ping&) { return absl::string_view("ping"); },
                        [](const GetHistory&) { return absl::string_view("history"); },
                        [](const CancelTurn&) { return absl::string_view("cancel"); },
                        [](const ResumeStream&) { return absl::string_view("resume"); },
                        [](const RegenerateReply&) { return absl::string_view("regenerate"); },
                        [](const EditMessage&) { return absl::string_view("edit"); },
                        [](const ListConversations&) { return absl::string_view("history"); },
                        [](const ListMessages&) { return absl::string_view("messages"); },
                        [](const JoinConversation&) { return absl::string_view("join"); },
                        [](const LeaveConversation&) { return absl::string_view("leave"); },
                        [](const Typing&) { return absl::string_view("typing"); },
                        [](const RenewToken&) { return absl::string_view("auth"); },
                    },
                    command);
}

absl::string_view EventName(const Event& event) {
  return std::visit(
      Overloaded{
          [](const Ack&) { return absl::string_view("ack"); },
          [](const StreamStart&) { return absl::string_view("stream_start"); },
          [](const StreamToken&) { return absl::string_view("stream_token"); },
          [](const StreamComplete&) { return absl::string_view("stream_complete"); },
          [](const ErrorEvent&) { return absl::string_view("error"); },
          [](const Pong&) { return absl::string_view("pong"); },
          [](const History&) { return absl::string_view("history"); },
          [](const StreamCancelled&) { return absl::string_view("stream_cancelled"); },
          [](const StreamInterrupted&) { return absl::string_view("stream_interrupted"); },
          [](const Resumed&) { return absl::string_view("resumed"); },
          [](const Heartbeat&) { return absl::string_view("heartbeat"); },
          [](const MessagePage&) { return absl::string_view("messages"); },
          [](const ConversationPage&) { return absl::string_view("history"); },
          [](const Joined&) { return absl::string_view("joined"); },
          [](const Left&) { return absl::string_view("left"); },
          [](const TypingRelay&) { return absl::string_view("typing"); },
          [](const MessageAdded&) { return absl::string_view("message_added"); },
          [](const StreamReasoning&) { return absl::string_view("stream_reasoning"); },
          [](const MemberJoined&) { return absl::string_view("member_joined"); },
          [](const MemberLeft&) { return absl::string_view("member_left"); },
          [](const TokenRenewed&) { return absl::string_view("authenticated"); },
      },
      event);
}

}  // namespace parley::edge
