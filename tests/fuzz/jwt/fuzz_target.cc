// JWT verification (HS256; RS256/ES256 share the parsing) in two ways: the input as a token, the
// way a stranger sends one; and the input as "HEADER\nCLAIMS" signed with the server's secret, so
// that header and claims the signature would otherwise keep out (overflowing or ill-typed times,
// odd subjects) reach the claim checks.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge/auth/base64url.h"
#include "edge/auth/jwt_verifier.h"

namespace {

constexpr std::string_view kSecret = "fuzzing-secret-of-thirty-two-bytes!";

const parley::edge::JwtVerifier& Verifier() {
  static const std::unique_ptr<parley::edge::JwtVerifier> verifier = [] {
    parley::edge::JwtVerifierOptions options;
    options.hs256_secret = std::string(kSecret);
    options.issuer = "parley-fuzz";
    options.audience = "parley";
    options.clock = [] { return absl::FromUnixSeconds(1'800'000'000); };
    return *parley::edge::JwtVerifier::Create(std::move(options));
  }();
  return *verifier;
}

std::string SignedToken(std::string_view header, std::string_view claims) {
  std::string input =
      parley::edge::Base64UrlEncode(header) + "." + parley::edge::Base64UrlEncode(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_size);
  return input + "." +
         parley::edge::Base64UrlEncode(std::string_view(reinterpret_cast<char*>(mac), mac_size));
}

}  // namespace

// An accepted token always names its user.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const parley::edge::JwtVerifier& verifier = Verifier();
  if (absl::StatusOr<parley::edge::Identity> identity = verifier.Verify(input);
      identity.ok() && identity->user_id.empty()) {
    __builtin_trap();
  }
  const size_t newline = input.find('\n');
  if (newline != std::string_view::npos) {
    absl::StatusOr<parley::edge::Identity> identity =
        verifier.Verify(SignedToken(input.substr(0, newline), input.substr(newline + 1)));
    if (identity.ok() && identity->user_id.empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
