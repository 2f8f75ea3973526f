#include "edge/protocol/ai_chat_session.h"

#include <utility>
#include <variant>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace parley::edge {
namespace {

// A key no other message of any connection has: persistence takes a repeated key for a retry.
std::string NewRequestId() {
  thread_local absl::BitGen bitgen;
  return absl::StrFormat("ai-chat-%016x%016x", absl::Uniform<uint64_t>(bitgen),
                         absl::Uniform<uint64_t>(bitgen));
}

}  // namespace

AiChatSession::AiChatSession(int chats_per_minute, Clock now)
    : now_(now != nullptr ? std::move(now) : Clock([] { return absl::Now(); })),
      // "N per minute": N back to back, then one every 60/N seconds.
      chats_(chats_per_minute, chats_per_minute, now_()) {}

void AiChatSession::Open(DialectHost& host) {
  host_ = &host;
  // This dialect's budget stands in for the connection's; the user's still applies. The page
  // asks for "gpt-4o" whatever the service runs: the default model answers a name it lacks.
  chat_ = &host.OpenChat(
      *host.request().user,
      ChatOptions{.messages_per_minute = 0, .unknown_model = UnknownModel::kUseDefault});
}

void AiChatSession::OnFrame(std::string_view frame, FrameType type) {
  if (closed_) {
    return;
  }
  if (type != FrameType::kText) {
    return chat_->Reject(
        ErrorEvent{ErrorCode::kInvalidFrame, "binary frames are not supported", ""});
  }
  std::variant<Command, ErrorEvent> decoded = ai_chat::DecodeFrame(frame);
  if (ErrorEvent* error = std::get_if<ErrorEvent>(&decoded)) {
    return chat_->Reject(std::move(*error));
  }
  Command& command = std::get<Command>(decoded);
  SendMessage* message = std::get_if<SendMessage>(&command);
  if (message == nullptr) {
    return chat_->Handle(std::move(command));  // A ping.
  }
  if (!chats_.TryAcquire(now_()).allowed) {
    closed_ = true;
    host_->Send(ai_chat::ErrorFrame(ai_chat::kRateLimitExceeded));
    host_->Close(CloseCode::kPolicy);
    return;
  }
  message->id = NewRequestId();
  if (conversation_id_.empty() && !creating_.empty()) {
    // The first chat is still creating the conversation; this one continues it.
    waiting_.push_back(std::move(*message));
    return;
  }
  Submit(std::move(*message));
}

void AiChatSession::Submit(SendMessage message) {
  message.conversation_id = conversation_id_;
  if (conversation_id_.empty()) {
    creating_ = message.id;
  }
  chat_->Handle(std::move(message));
}

void AiChatSession::Encode(const Event& event, Frames& frames) {
  std::vector<std::string> out = encoder_.Encode(event);
  frames.insert(frames.end(), std::make_move_iterator(out.begin()),
                std::make_move_iterator(out.end()));
  const Ack* ack = std::get_if<Ack>(&event);
  const ErrorEvent* error = std::get_if<ErrorEvent>(&event);
  const bool created = ack != nullptr && ack->id == creating_;
  const bool failed = error != nullptr && !creating_.empty() && error->id == creating_;
  if (!created && !failed) {
    return;
  }
  if (created) {
    conversation_id_ = ack->conversation_id;
  }
  creating_.clear();
  // With the conversation known, the waiting chats continue it; if its first chat failed, the
  // next one creates it.
  while (!waiting_.empty() && (creating_.empty() || !conversation_id_.empty())) {
    SendMessage message = std::move(waiting_.front());
    waiting_.pop_front();
    Submit(std::move(message));
  }
}

}  // namespace parley::edge
