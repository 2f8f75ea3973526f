#include "inference/token_count.h"

namespace parley::inference {

int EstimateTokens(std::string_view text) { return static_cast<int>((text.size() + 3) / 4); }

int EstimatePromptTokens(const v1::GenerateRequest& request) {
  constexpr int kPerMessage = 4;
  constexpr int kPerReply = 2;
  int tokens = kPerReply;
  for (const v1::ChatMessage& message : request.messages()) {
    tokens += kPerMessage + EstimateTokens(message.content());
  }
  return tokens;
}

}  // namespace parley::inference
