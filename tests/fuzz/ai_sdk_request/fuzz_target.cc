// The body of the AI SDK's chat request (POST /api/chat, useChat's UI messages). What it accepts
// names a chat and ends with the user's message.

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edge/server/ai_sdk_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<parley::edge::UiChatRequest> request = parley::edge::ParseUiChatRequest(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!request.ok()) {
    return 0;
  }
  if (request->chat_id.empty() || request->messages.empty() ||
      request->messages.back().role != ::parley::persistence::v1::ROLE_USER) {
    __builtin_trap();
  }
  return 0;
}
