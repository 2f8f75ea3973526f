#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace parley::edge {

// The kind of a verification key. Keys are typed so that a token can only ever be checked with
// the algorithm family its key was published for: an RS256 token is never checked against an
// EC key, and HS256 never uses public-key bytes as an HMAC secret (algorithm confusion).
enum class KeyType { kRsa, kEcP256 };

// One public key from a JWKS document.
struct PublicKey {
  std::string kid;  // empty when the JWK has no "kid"
  KeyType type = KeyType::kRsa;
  std::shared_ptr<EVP_PKEY> pkey;
};

// An immutable set of public keys; shared between verifying threads by shared_ptr.
struct KeySet {
  std::vector<PublicKey> keys;
  // Keys in the document that were skipped because this server does not use them
  // (other key types or curves, "use" other than "sig", "alg" other than RS256/ES256).
  int skipped = 0;
};

// Parses a JWKS document ({"keys":[...]}, RFC 7517). Accepts RSA keys ("n", "e", at least 2048
// bits) and EC P-256 keys ("x", "y"). Unsupported keys are skipped; a supported key with broken
// material, malformed JSON or a document without any usable key is an InvalidArgument error,
// because a half-understood key file is a configuration mistake to surface at start-up.
absl::StatusOr<KeySet> ParseJwks(std::string_view json);

// Reads and parses a JWKS file (at most 1 MiB).
absl::StatusOr<KeySet> LoadJwksFile(const std::string& path);

}  // namespace parley::edge
