#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "edge/protocol/copilot_codec.h"
#include "edge/protocol/dialect_session.h"
#include "edge/turn/suggestions.h"

namespace parley::edge {

// One /copilot connection (docs/dialects/copilot.md). Each `message` frame becomes a turn with an
// idempotency key of its own (the dialect's frames carry none); CopilotEncoder turns the turn's
// events into the dialect's frames; after a reply completes, its follow-up suggestions are
// generated (Suggester) and sent as `suggestions`, after `stream_complete` and never in its way.
// A message that arrives while they are being written waits for them, so a reply's suggestions
// always come before the next exchange and never land in the middle of it.
class CopilotSession final : public DialectSession {
 public:
  using Clock = std::function<int64_t()>;  // Milliseconds since the epoch.

  // `suggester` null turns suggestions off; otherwise it outlives the session.
  explicit CopilotSession(Suggester* suggester, Clock now_ms = nullptr);
  ~CopilotSession() override;

  void Open(DialectHost& host) override;
  void OnFrame(std::string_view frame, FrameType type) override;
  void Encode(const Event& event, Frames& frames) override;
  void OnClosed() override;

 private:
  void Submit(copilot::CopilotRequest request);
  void Suggest(const copilot::CompletedReply& reply);
  void OnSuggestions(const std::string& conversation_id, std::vector<std::string> suggestions);

  Suggester* const suggester_;
  const Clock now_ms_;
  DialectHost* host_ = nullptr;
  Chat* chat_ = nullptr;
  copilot::CopilotEncoder encoder_;
  // Set while a reply's suggestions are being generated: stops that generation.
  std::function<void()> stop_suggestions_;
  // Messages that arrived while suggestions were being generated, in order.
  std::deque<copilot::CopilotRequest> waiting_;
  // Callbacks that outlive the session find this expired.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace parley::edge
