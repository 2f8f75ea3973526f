#include "edge/protocol/copilot_session.h"

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
  return absl::StrFormat("copilot-%016x%016x", absl::Uniform<uint64_t>(bitgen),
                         absl::Uniform<uint64_t>(bitgen));
}

}  // namespace

CopilotSession::CopilotSession(Suggester* suggester, Clock now_ms)
    : suggester_(suggester),
      now_ms_(now_ms != nullptr ? std::move(now_ms)
                                : Clock([] { return absl::ToUnixMillis(absl::Now()); })) {}

CopilotSession::~CopilotSession() { OnClosed(); }

void CopilotSession::Open(DialectHost& host) {
  host_ = &host;
  // The route authenticated the upgrade request (query token, header or subprotocol).
  // The hook's clients may name models of their own; the default model answers those.
  chat_ =
      &host.OpenChat(*host.request().user, ChatOptions{.unknown_model = UnknownModel::kUseDefault});
}

void CopilotSession::OnFrame(std::string_view frame, FrameType type) {
  if (type != FrameType::kText) {
    return chat_->Reject(
        ErrorEvent{ErrorCode::kInvalidFrame, "binary frames are not supported", ""});
  }
  std::variant<copilot::CopilotRequest, ErrorEvent> decoded = copilot::DecodeFrame(frame);
  if (ErrorEvent* error = std::get_if<ErrorEvent>(&decoded)) {
    return chat_->Reject(std::move(*error));
  }
  copilot::CopilotRequest request = std::get<copilot::CopilotRequest>(std::move(decoded));
  if (stop_suggestions_ != nullptr) {
    waiting_.push_back(std::move(request));
    return;
  }
  Submit(std::move(request));
}

void CopilotSession::Submit(copilot::CopilotRequest request) {
  request.message.id = NewRequestId();
  encoder_.Expect(request.message.id, request.streaming, request.message.content);
  chat_->Handle(std::move(request.message));
}

void CopilotSession::Encode(const Event& event, Frames& frames) {
  copilot::CopilotEncoder::Output out = encoder_.Encode(event, now_ms_());
  for (std::string& frame : out.frames) {
    frames.push_back(std::move(frame));
  }
  if (out.completed.has_value()) {
    // After the frame that ends the reply is queued, so it is never held up by this.
    Suggest(*out.completed);
  }
}

void CopilotSession::Suggest(const copilot::CompletedReply& reply) {
  if (suggester_ == nullptr || host_ == nullptr || stop_suggestions_ != nullptr ||
      reply.answer.empty()) {
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  stop_suggestions_ = suggester_->Suggest(
      reply.model, reply.question, reply.answer, chat_->user().id, host_->executor(),
      [this, alive, conversation_id = reply.conversation_id](std::vector<std::string> suggestions) {
        if (!alive.expired()) {
          OnSuggestions(conversation_id, std::move(suggestions));
        }
      });
}

void CopilotSession::OnSuggestions(const std::string& conversation_id,
                                   std::vector<std::string> suggestions) {
  stop_suggestions_ = nullptr;
  // A generation that failed or wrote nothing usable is not the client's problem: it hears
  // nothing.
  if (!suggestions.empty()) {
    host_->Send(copilot::SuggestionsFrame(suggestions, conversation_id, now_ms_()));
  }
  while (!waiting_.empty() && stop_suggestions_ == nullptr) {
    copilot::CopilotRequest request = std::move(waiting_.front());
    waiting_.pop_front();
    Submit(std::move(request));
  }
}

void CopilotSession::OnClosed() {
  alive_.reset();
  waiting_.clear();
  if (stop_suggestions_ != nullptr) {
    std::exchange(stop_suggestions_, nullptr)();
  }
}

}  // namespace parley::edge
