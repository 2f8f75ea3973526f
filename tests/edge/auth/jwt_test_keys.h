#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>

namespace parley::edge::testing {

// Signing material generated in the test process, so no key ever lives in the repository.
struct TestKey {
  std::shared_ptr<EVP_PKEY> pkey;
  std::string kid;
};

TestKey GenerateRsaKey(std::string kid, int bits = 2048);
TestKey GenerateEcKey(std::string kid);

// The public half as a JWK object ({"kty":…,"kid":…,…}); `alg` is added when non-empty.
std::string PublicJwk(const TestKey& key, std::string_view alg = "");
// The public half as SubjectPublicKeyInfo PEM.
std::string PublicKeyPem(const TestKey& key);
// The RSA modulus, big-endian.
std::string RsaModulus(const TestKey& key);

// Compact JWS with the given JSON header and claims (used verbatim), signed as the header says.
std::string SignHs256(std::string_view header_json, std::string_view claims_json,
                      std::string_view secret);
std::string SignRs256(std::string_view header_json, std::string_view claims_json,
                      const TestKey& key);
// `raw_signature` false produces the DER form JWS forbids, to test that it is refused.
std::string SignEs256(std::string_view header_json, std::string_view claims_json,
                      const TestKey& key, bool raw_signature = true);

}  // namespace parley::edge::testing
