// A JWKS document (the --jwks_file the edge reloads while it runs): RSA and P-256 keys from JSON.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "edge/auth/jwks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<parley::edge::KeySet> keys =
      parley::edge::ParseJwks(std::string_view(reinterpret_cast<const char*>(data), size));
  if (keys.ok()) {
    for (const parley::edge::PublicKey& key : keys->keys) {
      if (key.pkey == nullptr) {
        __builtin_trap();  // Every key it keeps can verify a signature.
      }
    }
  }
  return 0;
}
