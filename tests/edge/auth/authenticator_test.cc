#include "edge/auth/authenticator.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/edge/auth/jwt_test_keys.h"

namespace parley::edge {
namespace {

using ::parley::edge::testing::SignHs256;

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test-secret";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

std::shared_ptr<const JwtVerifier> MakeVerifier() {
  JwtVerifierOptions options;
  options.hs256_secret = kSecret;
  options.clock = [] { return kNow; };
  absl::StatusOr<std::unique_ptr<JwtVerifier>> verifier = JwtVerifier::Create(options);
  EXPECT_TRUE(verifier.ok()) << verifier.status();
  return verifier.ok() ? std::shared_ptr<const JwtVerifier>(*std::move(verifier)) : nullptr;
}

std::string ValidToken() {
  return SignHs256(R"({"alg":"HS256"})",
                   absl::StrCat(R"({"sub":"alice","exp":)", absl::ToUnixSeconds(kNow) + 60, "}"),
                   kSecret);
}

TEST(AuthenticatorTest, VerifiesTokenFromAnyPlace) {
  Authenticator authenticator(MakeVerifier(), /*allow_anonymous=*/false);
  std::string token = ValidToken();
  for (const absl::StatusOr<Identity>& identity :
       {authenticator.Authenticate("/ws/chat", "Bearer " + token, ""),
        authenticator.Authenticate("/ws/chat", "", "parley.v1, bearer." + token),
        authenticator.Authenticate("/ws/chat?token=" + token, "", "")}) {
    ASSERT_TRUE(identity.ok()) << identity.status();
    EXPECT_EQ(identity->user_id, "alice");
    EXPECT_FALSE(identity->anonymous);
  }
  EXPECT_EQ(RefusalOf(authenticator.Authenticate("/ws/chat", "", "").status()),
            AuthRefusal::kMissingToken);
  EXPECT_EQ(RefusalOf(authenticator.Authenticate("/ws/chat", "Bearer x.y.z", "").status()),
            AuthRefusal::kMalformed);
}

TEST(AuthenticatorTest, DevelopmentModeAdmitsOnlyRequestsWithoutToken) {
  Authenticator authenticator(MakeVerifier(), /*allow_anonymous=*/true);
  absl::StatusOr<Identity> anonymous = authenticator.Authenticate("/ws/chat?userId=u", "", "");
  ASSERT_TRUE(anonymous.ok());
  EXPECT_TRUE(anonymous->anonymous);
  EXPECT_TRUE(anonymous->user_id.empty());
  // A token that is there must be valid.
  EXPECT_EQ(RefusalOf(authenticator.Authenticate("/ws/chat?token=forged", "", "").status()),
            AuthRefusal::kMalformed);
  absl::StatusOr<Identity> alice = authenticator.Authenticate("/", "Bearer " + ValidToken(), "");
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->user_id, "alice");
}

TEST(AuthenticatorTest, WithoutVerifierEveryTokenIsRefused) {
  Authenticator authenticator(nullptr, /*allow_anonymous=*/true);
  EXPECT_TRUE(authenticator.Authenticate("/", "", "").ok());
  EXPECT_EQ(RefusalOf(authenticator.Authenticate("/", "Bearer " + ValidToken(), "").status()),
            AuthRefusal::kUnsupportedAlg);
}

}  // namespace
}  // namespace parley::edge
