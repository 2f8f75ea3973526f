// What an OpenAI-compatible model server sends: one streamed chunk's `data:` (JSON, or [DONE]),
// and an error response's body with its status (the first byte picks the status).

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "inference/engines/openai_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  parley::inference::StreamEvent event;
  parley::inference::ParseStreamEvent(input, event).IgnoreError();
  if (size > 0) {
    constexpr int kStatuses[] = {400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504};
    const int status = kStatuses[data[0] % (sizeof(kStatuses) / sizeof(kStatuses[0]))];
    if (parley::inference::StatusFromHttpError(status, input.substr(1)).ok()) {
      __builtin_trap();  // An HTTP error never reads as success.
    }
  }
  return 0;
}
