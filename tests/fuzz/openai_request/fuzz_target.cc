// The body of POST /v1/chat/completions (the OpenAI-compatible API). What it accepts must be
// what the API promises: some messages, the last one the user's, sampling within its ranges.

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edge/server/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<parley::edge::CompletionRequest> request = parley::edge::ParseCompletionRequest(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!request.ok()) {
    return 0;
  }
  const parley::edge::Sampling& sampling = request->sampling;
  if (request->messages.empty() ||
      request->messages.back().role != ::parley::persistence::v1::ROLE_USER ||
      (sampling.temperature && !(*sampling.temperature >= 0 && *sampling.temperature <= 2)) ||
      (sampling.top_p && !(*sampling.top_p >= 0 && *sampling.top_p <= 1)) ||
      (sampling.max_tokens && *sampling.max_tokens < 1)) {
    __builtin_trap();
  }
  return 0;
}
