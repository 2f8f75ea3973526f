// Persistence's page tokens, which clients send back as `pageToken` (any bytes). A token that
// decodes names non-negative positions, and encoding them gives a token that decodes the same.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "persistence/stores/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view token(reinterpret_cast<const char*>(data), size);
  for (absl::string_view kind : {"c", "m", "p"}) {
    int64_t a = 0;
    int64_t b = 0;
    if (!parley::persistence::DecodePageToken(token, kind, &a, &b).ok()) {
      continue;
    }
    int64_t again_a = -1;
    int64_t again_b = -1;
    const std::string encoded = parley::persistence::EncodePageToken(kind, a, b);
    if (a < 0 || b < 0 ||
        !parley::persistence::DecodePageToken(encoded, kind, &again_a, &again_b).ok() ||
        again_a != a || again_b != b) {
      __builtin_trap();
    }
  }
  return 0;
}
