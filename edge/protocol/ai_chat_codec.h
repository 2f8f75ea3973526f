#pragma once

#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "edge/protocol/messages.h"
#include "edge/protocol/output_sanitizer.h"

// The ai-chat dialect on /ws/ai-chat (a ChatGPT-style page): `{"type":"chat",...}` and
// `{"type":"ping"}` in; chunk, done, error and pong out. One connection is one conversation.
// Documented in docs/dialects/ai-chat.md.
namespace parley::edge::ai_chat {

// Name of the dialect in logs and in the `dialect` label of the edge's metrics.
inline constexpr absl::string_view kDialectName = "ai_chat";

// The error a connection gets for the `chat` frame past its per-minute budget, just before it is
// closed with 1008 (policy violation).
inline constexpr std::string_view kRateLimitExceeded = "Rate limit exceeded";

// Decodes one client frame into a SendMessage (with no id and no conversation: the connection
// adds both) or a Ping. Anything a client can get wrong comes back as the ErrorEvent to send.
std::variant<Command, ErrorEvent> DecodeFrame(std::string_view frame);

std::string ChunkFrame(std::string_view content);
std::string DoneFrame();
std::string ErrorFrame(std::string_view message);
std::string PongFrame();

// Turns the edge's events for one connection into ai-chat frames, sanitising each reply's text on
// its way out (OutputSanitizer, one per reply, so a "<script" split across two chunks is caught
// too). The concatenated chunks of a reply are its stored text with every "<script" replaced.
// Pure: no I/O.
class AiChatEncoder {
 public:
  std::vector<std::string> Encode(const Event& event);

  // Replies still streaming.
  size_t streaming() const { return replies_.size(); }

 private:
  // Ends the reply `message_id`: its held-back text as a last chunk, if any.
  void Finish(const std::string& message_id, std::vector<std::string>& frames);

  std::map<std::string, OutputSanitizer> replies_;
};

}  // namespace parley::edge::ai_chat
