#include "edge/auth/jwks.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "edge/auth/base64url.h"
#include "tests/edge/auth/jwt_test_keys.h"

namespace parley::edge {
namespace {

using ::parley::edge::testing::GenerateEcKey;
using ::parley::edge::testing::GenerateRsaKey;
using ::parley::edge::testing::PublicJwk;
using ::parley::edge::testing::TestKey;

std::string Jwks(std::initializer_list<std::string> keys) {
  std::string out = R"({"keys":[)";
  bool first = true;
  for (const std::string& key : keys) {
    absl::StrAppend(&out, first ? "" : ",", key);
    first = false;
  }
  return out + "]}";
}

TEST(JwksTest, LoadsRsaAndEcKeysAndSkipsOthers) {
  TestKey rsa = GenerateRsaKey("r");
  TestKey ec = GenerateEcKey("");
  absl::StatusOr<KeySet> set = ParseJwks(Jwks({
      PublicJwk(rsa, "RS256"),
      PublicJwk(ec),
      R"({"kty":"oct","k":"c2VjcmV0","kid":"hmac"})",  // symmetric keys never come from JWKS
      R"({"kty":"OKP","crv":"Ed25519","x":"AAAA"})",
      absl::StrReplaceAll(PublicJwk(rsa), {{"\"kty\"", "\"use\":\"enc\",\"kty\""}}),
      PublicJwk(rsa, "RS512"),
  }));
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->keys.size(), 2u);
  EXPECT_EQ(set->skipped, 4);
  EXPECT_EQ(set->keys[0].kid, "r");
  EXPECT_EQ(set->keys[0].type, KeyType::kRsa);
  EXPECT_EQ(set->keys[1].kid, "");
  EXPECT_EQ(set->keys[1].type, KeyType::kEcP256);
}

TEST(JwksTest, RefusesBrokenDocuments) {
  TestKey ec = GenerateEcKey("e");
  std::string jwk = PublicJwk(ec);
  EXPECT_FALSE(ParseJwks("").ok());
  EXPECT_FALSE(ParseJwks("[]").ok());
  EXPECT_FALSE(ParseJwks(R"({"keys":{}})").ok());
  EXPECT_FALSE(ParseJwks(R"({"keys":[]})").ok());  // nothing usable
  EXPECT_FALSE(ParseJwks(R"({"keys":[42]})").ok());
  EXPECT_FALSE(ParseJwks(R"({"keys":[{"kty":"RSA","e":"AQAB"}]})").ok());
  EXPECT_FALSE(ParseJwks(R"({"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]})").ok());
  // A point that is not on the curve.
  std::string off_curve =
      absl::StrCat(R"({"kty":"EC","crv":"P-256","x":")", Base64UrlEncode(std::string(32, '\x01')),
                   R"(","y":")", Base64UrlEncode(std::string(32, '\x02')), R"("})");
  EXPECT_FALSE(ParseJwks(Jwks({off_curve})).ok());
  // Coordinates must be full length.
  std::string short_x =
      absl::StrCat(R"({"kty":"EC","crv":"P-256","x":")", Base64UrlEncode(std::string(31, '\x01')),
                   R"(","y":")", Base64UrlEncode(std::string(32, '\x02')), R"("})");
  EXPECT_FALSE(ParseJwks(Jwks({short_x})).ok());
  EXPECT_TRUE(ParseJwks(Jwks({jwk})).ok());
}

}  // namespace
}  // namespace parley::edge
