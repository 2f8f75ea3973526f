#pragma once

#include <deque>
#include <functional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "edge/limits/token_bucket.h"
#include "edge/protocol/ai_chat_codec.h"
#include "edge/protocol/dialect_session.h"

namespace parley::edge {

// One /ws/ai-chat connection (docs/dialects/ai-chat.md): one conversation, created by its first
// `chat` and continued by the later ones; replies sanitised on their way out (AiChatEncoder).
// The dialect's own budget of `chat` frames per minute replaces the connection's message budget
// (the user's budget over all connections still applies): the frame past it is answered
// `error {"message":"Rate limit exceeded"}` and the connection is closed with 1008.
class AiChatSession final : public DialectSession {
 public:
  using Clock = std::function<absl::Time()>;

  // `chats_per_minute` <= 0 lifts the dialect's budget.
  explicit AiChatSession(int chats_per_minute, Clock now = nullptr);

  void Open(DialectHost& host) override;
  void OnFrame(std::string_view frame, FrameType type) override;
  void Encode(const Event& event, Frames& frames) override;

 private:
  void Submit(SendMessage message);

  const Clock now_;
  TokenBucket chats_;
  DialectHost* host_ = nullptr;
  Chat* chat_ = nullptr;
  ai_chat::AiChatEncoder encoder_;
  // The connection's conversation, known from the first chat's ack on.
  std::string conversation_id_;
  // The id of the chat that creates the conversation, while it has no ack yet.
  std::string creating_;
  // Chats that arrived before the conversation existed: sent with its id once it does.
  std::deque<SendMessage> waiting_;
  bool closed_ = false;
};

}  // namespace parley::edge
