#include "edge/auth/jwt_verifier.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "edge/auth/base64url.h"
#include "tests/edge/auth/jwt_test_keys.h"

namespace parley::edge {
namespace {

using ::parley::edge::testing::GenerateEcKey;
using ::parley::edge::testing::GenerateRsaKey;
using ::parley::edge::testing::PublicJwk;
using ::parley::edge::testing::PublicKeyPem;
using ::parley::edge::testing::RsaModulus;
using ::parley::edge::testing::SignEs256;
using ::parley::edge::testing::SignHs256;
using ::parley::edge::testing::SignRs256;
using ::parley::edge::testing::TestKey;

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test-secret";
constexpr char kIssuer[] = "https://id.example.com";
constexpr char kAudience[] = "parley";
constexpr int64_t kNow = 1'800'000'000;

std::string Claims(const std::string& extra = "", int64_t exp = kNow + 3600) {
  return absl::StrCat(R"({"sub":"user-1","iss":")", kIssuer, R"(","aud":")", kAudience,
                      R"(","iat":)", kNow - 10, R"(,"exp":)", exp, extra, "}");
}

std::string Header(std::string_view alg, std::string_view kid = "") {
  if (kid.empty()) {
    return absl::StrCat(R"({"alg":")", std::string(alg), R"(","typ":"JWT"})");
  }
  return absl::StrCat(R"({"alg":")", std::string(alg), R"(","typ":"JWT","kid":")", std::string(kid),
                      R"("})");
}

class JwtVerifierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = new TestKey(GenerateRsaKey("rsa-1"));
    other_rsa_ = new TestKey(GenerateRsaKey("rsa-1"));  // same kid, different key: a forger
    rotated_rsa_ = new TestKey(GenerateRsaKey("rsa-2"));
    ec_ = new TestKey(GenerateEcKey("ec-1"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete other_rsa_;
    delete rotated_rsa_;
    delete ec_;
  }

  void SetUp() override {
    const char* tmp = getenv("TMPDIR");
    std::string templ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/parley-jwt-XXXXXX");
    std::vector<char> buffer(templ.begin(), templ.end());
    buffer.push_back('\0');
    char* made = mkdtemp(buffer.data());
    ASSERT_NE(made, nullptr) << templ;
    dir_ = made;
    jwks_path_ = dir_ + "/jwks.json";
    WriteJwks({PublicJwk(*rsa_, "RS256"), PublicJwk(*ec_)});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes a new file and renames it into place, as a secret mount or deploy would.
  void WriteJwks(const std::vector<std::string>& jwks) {
    WriteFile(jwks_path_, absl::StrCat(R"({"keys":[)", absl::StrJoin(jwks, ","), "]}"));
  }
  void WriteFile(const std::string& path, const std::string& text) {
    std::string temp = path + ".new";
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      out << text;
    }
    std::filesystem::rename(temp, path);
  }

  JwtVerifierOptions Options() {
    JwtVerifierOptions options;
    options.hs256_secret = kSecret;
    options.jwks_file = jwks_path_;
    options.issuer = kIssuer;
    options.audience = kAudience;
    options.clock = [this] { return now_; };
    return options;
  }

  std::unique_ptr<JwtVerifier> Make(JwtVerifierOptions options) {
    absl::StatusOr<std::unique_ptr<JwtVerifier>> verifier = JwtVerifier::Create(std::move(options));
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return verifier.ok() ? *std::move(verifier) : nullptr;
  }
  std::unique_ptr<JwtVerifier> Make() { return Make(Options()); }

  static std::optional<AuthRefusal> Refusal(const absl::StatusOr<Identity>& result) {
    return RefusalOf(result.status());
  }

  static TestKey* rsa_;
  static TestKey* other_rsa_;
  static TestKey* rotated_rsa_;
  static TestKey* ec_;
  absl::Time now_ = absl::FromUnixSeconds(kNow);
  std::string dir_;
  std::string jwks_path_;
};

TestKey* JwtVerifierTest::rsa_ = nullptr;
TestKey* JwtVerifierTest::other_rsa_ = nullptr;
TestKey* JwtVerifierTest::rotated_rsa_ = nullptr;
TestKey* JwtVerifierTest::ec_ = nullptr;

TEST_F(JwtVerifierTest, AcceptsValidTokenForEachAlgorithm) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  EXPECT_EQ(verifier->AcceptedAlgorithms(), "HS256,RS256,ES256");
  for (const std::string& token : {SignHs256(Header("HS256"), Claims(), kSecret),
                                   SignRs256(Header("RS256", "rsa-1"), Claims(), *rsa_),
                                   SignRs256(Header("RS256"), Claims(), *rsa_),
                                   SignEs256(Header("ES256", "ec-1"), Claims(), *ec_),
                                   SignEs256(Header("ES256"), Claims(), *ec_)}) {
    absl::StatusOr<Identity> identity = verifier->Verify(token);
    ASSERT_TRUE(identity.ok()) << identity.status() << " for " << token;
    EXPECT_EQ(identity->user_id, "user-1");
    EXPECT_FALSE(identity->anonymous);
    EXPECT_EQ(identity->expires_at, absl::FromUnixSeconds(kNow + 3600));
  }
}

TEST_F(JwtVerifierTest, RefusesForgedSignatures) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  EXPECT_EQ(Refusal(verifier->Verify(
                SignHs256(Header("HS256"), Claims(), "another-secret-of-32-bytes-or-more!!"))),
            AuthRefusal::kBadSignature);
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256", "rsa-1"), Claims(), *other_rsa_))),
            AuthRefusal::kBadSignature);
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256"), Claims(), *other_rsa_))),
            AuthRefusal::kBadSignature);
  TestKey other_ec = GenerateEcKey("ec-1");
  EXPECT_EQ(Refusal(verifier->Verify(SignEs256(Header("ES256", "ec-1"), Claims(), other_ec))),
            AuthRefusal::kBadSignature);

  // A genuine signature with the claims swapped for someone else's.
  std::string genuine = SignRs256(Header("RS256", "rsa-1"), Claims(), *rsa_);
  std::string other_claims = Base64UrlEncode(absl::StrReplaceAll(Claims(), {{"user-1", "admin"}}));
  size_t first = genuine.find('.');
  size_t second = genuine.find('.', first + 1);
  std::string tampered = genuine.substr(0, first + 1) + other_claims + genuine.substr(second);
  EXPECT_EQ(Refusal(verifier->Verify(tampered)), AuthRefusal::kBadSignature);

  // ES256 signatures must be raw r||s; the DER form is refused even though it is genuine.
  EXPECT_EQ(Refusal(verifier->Verify(
                SignEs256(Header("ES256", "ec-1"), Claims(), *ec_, /*raw_signature=*/false))),
            AuthRefusal::kBadSignature);
}

TEST_F(JwtVerifierTest, ChecksExpiryWithClockSkew) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  // Within the default 30 s allowance.
  EXPECT_TRUE(verifier->Verify(SignHs256(Header("HS256"), Claims("", kNow - 29), kSecret)).ok());
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), Claims("", kNow - 30), kSecret))),
            AuthRefusal::kExpired);
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256"), Claims("", kNow - 3600), *rsa_))),
            AuthRefusal::kExpired);

  JwtVerifierOptions strict = Options();
  strict.clock_skew = absl::ZeroDuration();
  auto strict_verifier = Make(strict);
  ASSERT_NE(strict_verifier, nullptr);
  EXPECT_TRUE(
      strict_verifier->Verify(SignHs256(Header("HS256"), Claims("", kNow + 1), kSecret)).ok());
  EXPECT_EQ(Refusal(strict_verifier->Verify(SignHs256(Header("HS256"), Claims("", kNow), kSecret))),
            AuthRefusal::kExpired);

  // The clock moving on expires a token that was fine.
  std::string token = SignHs256(Header("HS256"), Claims("", kNow + 60), kSecret);
  EXPECT_TRUE(verifier->Verify(token).ok());
  now_ += absl::Seconds(90);
  EXPECT_EQ(Refusal(verifier->Verify(token)), AuthRefusal::kExpired);
}

TEST_F(JwtVerifierTest, ChecksNotBeforeAndIssuedAt) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  EXPECT_TRUE(verifier
                  ->Verify(SignHs256(Header("HS256"), Claims(absl::StrCat(",\"nbf\":", kNow + 29)),
                                     kSecret))
                  .ok());
  EXPECT_EQ(Refusal(verifier->Verify(
                SignHs256(Header("HS256"), Claims(absl::StrCat(",\"nbf\":", kNow + 31)), kSecret))),
            AuthRefusal::kNotYetValid);
  // Fractional NumericDate values are allowed by RFC 7519.
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(
                Header("HS256"), Claims(absl::StrCat(",\"nbf\":", kNow + 30, ".5")), kSecret))),
            AuthRefusal::kNotYetValid);
  std::string future_iat =
      absl::StrCat(R"({"sub":"user-1","iss":")", kIssuer, R"(","aud":")", kAudience, R"(","iat":)",
                   kNow + 600, R"(,"exp":)", kNow + 3600, "}");
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), future_iat, kSecret))),
            AuthRefusal::kNotYetValid);
  EXPECT_EQ(Refusal(verifier->Verify(
                SignHs256(Header("HS256"), Claims(",\"nbf\":\"tomorrow\""), kSecret))),
            AuthRefusal::kMalformed);
}

TEST_F(JwtVerifierTest, ChecksIssuer) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  std::string wrong = absl::StrReplaceAll(Claims(), {{kIssuer, "https://evil.example.com"}});
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), wrong, kSecret))),
            AuthRefusal::kWrongIssuer);
  std::string missing = absl::StrCat(R"({"sub":"user-1","aud":"parley","exp":)", kNow + 60, "}");
  EXPECT_EQ(Refusal(verifier->Verify(SignEs256(Header("ES256"), missing, *ec_))),
            AuthRefusal::kWrongIssuer);

  // Not configured: not checked.
  JwtVerifierOptions any_issuer = Options();
  any_issuer.issuer.clear();
  auto lenient = Make(any_issuer);
  ASSERT_NE(lenient, nullptr);
  EXPECT_TRUE(lenient->Verify(SignHs256(Header("HS256"), wrong, kSecret)).ok());
}

TEST_F(JwtVerifierTest, ChecksAudienceAsStringOrArray) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  auto with_aud = [](std::string_view aud) {
    return absl::StrCat(R"({"sub":"user-1","iss":")", kIssuer, R"(","aud":)", std::string(aud),
                        R"(,"exp":)", kNow + 60, "}");
  };
  EXPECT_TRUE(
      verifier->Verify(SignHs256(Header("HS256"), with_aud(R"(["other","parley"])"), kSecret))
          .ok());
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), with_aud(R"("other")"), kSecret))),
            AuthRefusal::kWrongAudience);
  EXPECT_EQ(Refusal(verifier->Verify(
                SignHs256(Header("HS256"), with_aud(R"(["other","parley-x"])"), kSecret))),
            AuthRefusal::kWrongAudience);
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), with_aud("[]"), kSecret))),
            AuthRefusal::kWrongAudience);
  std::string no_aud =
      absl::StrCat(R"({"sub":"user-1","iss":")", kIssuer, R"(","exp":)", kNow + 60, "}");
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256"), no_aud, *rsa_))),
            AuthRefusal::kWrongAudience);
}

TEST_F(JwtVerifierTest, RefusesAlgNoneAndUnconfiguredAlgorithms) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  std::string unsigned_token =
      Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + Base64UrlEncode(Claims()) + ".";
  EXPECT_EQ(Refusal(verifier->Verify(unsigned_token)), AuthRefusal::kUnsupportedAlg);
  for (std::string_view alg : {"None", "NONE", "HS512", "RS384", "PS256", "EdDSA"}) {
    EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header(alg), Claims(), kSecret))),
              AuthRefusal::kUnsupportedAlg)
        << alg;
  }
  // HS256 is not accepted when no secret is configured, however well it is signed.
  JwtVerifierOptions jwks_only = Options();
  jwks_only.hs256_secret.clear();
  auto public_key_verifier = Make(jwks_only);
  ASSERT_NE(public_key_verifier, nullptr);
  EXPECT_EQ(Refusal(public_key_verifier->Verify(SignHs256(Header("HS256"), Claims(), kSecret))),
            AuthRefusal::kUnsupportedAlg);
  // And RS256/ES256 are not accepted without a JWKS.
  JwtVerifierOptions secret_only = Options();
  secret_only.jwks_file.clear();
  auto secret_verifier = Make(secret_only);
  ASSERT_NE(secret_verifier, nullptr);
  EXPECT_EQ(Refusal(secret_verifier->Verify(SignRs256(Header("RS256"), Claims(), *rsa_))),
            AuthRefusal::kUnsupportedAlg);
  // Critical extensions nobody here understands.
  EXPECT_EQ(Refusal(verifier->Verify(
                SignHs256(R"({"alg":"HS256","crit":["exp"],"exp":1})", Claims(), kSecret))),
            AuthRefusal::kUnsupportedAlg);
}

TEST_F(JwtVerifierTest, RefusesAlgorithmConfusion) {
  std::string pem = PublicKeyPem(*rsa_);
  std::string modulus = RsaModulus(*rsa_);
  std::string jwk = PublicJwk(*rsa_);
  JwtVerifierOptions jwks_only = Options();
  jwks_only.hs256_secret.clear();
  auto public_key_verifier = Make(jwks_only);
  ASSERT_NE(public_key_verifier, nullptr);
  for (const std::string& key_bytes : {pem, modulus, jwk}) {
    EXPECT_EQ(Refusal(public_key_verifier->Verify(
                  SignHs256(Header("HS256", "rsa-1"), Claims(), key_bytes))),
              AuthRefusal::kUnsupportedAlg);
  }
  // With HS256 enabled too, the public key is still never an HMAC secret.
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  for (const std::string& key_bytes : {pem, modulus, jwk}) {
    EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256", "rsa-1"), Claims(), key_bytes))),
              AuthRefusal::kBadSignature);
  }
  // An ES256 header naming the RSA key's kid finds no EC key under it, and vice versa.
  EXPECT_EQ(Refusal(verifier->Verify(SignEs256(Header("ES256", "rsa-1"), Claims(), *ec_))),
            AuthRefusal::kUnknownKey);
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256", "ec-1"), Claims(), *rsa_))),
            AuthRefusal::kUnknownKey);
}

TEST_F(JwtVerifierTest, RefusesUnknownKid) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256", "rsa-9"), Claims(), *rsa_))),
            AuthRefusal::kUnknownKey);
  EXPECT_EQ(Refusal(verifier->Verify(SignEs256(Header("ES256", "nope"), Claims(), *ec_))),
            AuthRefusal::kUnknownKey);
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(R"({"alg":"RS256","kid":7})", Claims(), kSecret))),
            AuthRefusal::kMalformed);
}

TEST_F(JwtVerifierTest, RefusesMalformedTokens) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  std::string good = SignHs256(Header("HS256"), Claims(), kSecret);
  std::string header = Base64UrlEncode(Header("HS256"));
  std::string claims = Base64UrlEncode(Claims());
  std::string signature = good.substr(good.rfind('.') + 1);
  for (const std::string& token : {
           std::string("garbage"),
           std::string("a.b"),
           good + ".extra",
           header + "." + claims + "." + signature + "=",  // padding is not base64url
           "!!!." + claims + "." + signature,
           header + "." + claims.substr(1) + "." + signature,
           header + ".e30=." + signature,
           Base64UrlEncode("not json") + "." + claims + "." + signature,
           Base64UrlEncode(R"(["HS256"])") + "." + claims + "." + signature,
           header + "." + Base64UrlEncode(R"({"sub":)") + "." + signature,
           std::string(20000, 'a'),
       }) {
    EXPECT_EQ(Refusal(verifier->Verify(token)), AuthRefusal::kMalformed) << token;
  }
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(R"({"typ":"JWT"})", Claims(), kSecret))),
            AuthRefusal::kMalformed);
  EXPECT_EQ(Refusal(verifier->Verify("")), AuthRefusal::kMissingToken);
}

TEST_F(JwtVerifierTest, RequiresSubjectAndExpiry) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  auto claims_with = [](std::string_view sub_member) {
    return absl::StrCat("{", std::string(sub_member), R"("iss":")", kIssuer, R"(","aud":")",
                        kAudience, R"(","exp":)", kNow + 60, "}");
  };
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), claims_with(""), kSecret))),
            AuthRefusal::kMalformed);
  EXPECT_EQ(
      Refusal(verifier->Verify(SignHs256(Header("HS256"), claims_with(R"("sub":"",)"), kSecret))),
      AuthRefusal::kMalformed);
  EXPECT_EQ(
      Refusal(verifier->Verify(SignHs256(Header("HS256"), claims_with(R"("sub":42,)"), kSecret))),
      AuthRefusal::kMalformed);
  std::string no_exp =
      absl::StrCat(R"({"sub":"user-1","iss":")", kIssuer, R"(","aud":")", kAudience, R"("})");
  EXPECT_EQ(Refusal(verifier->Verify(SignHs256(Header("HS256"), no_exp, kSecret))),
            AuthRefusal::kMalformed);
  JwtVerifierOptions lenient = Options();
  lenient.require_exp = false;
  auto lenient_verifier = Make(lenient);
  ASSERT_NE(lenient_verifier, nullptr);
  absl::StatusOr<Identity> identity =
      lenient_verifier->Verify(SignHs256(Header("HS256"), no_exp, kSecret));
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->expires_at, absl::InfiniteFuture());
}

// Counts the JWKS thread's looks at the file, so a test can wait for one that began after it
// changed the file.
class JwksChecks {
 public:
  void Install(JwtVerifierOptions& options) {
    options.jwks_check_interval = absl::Milliseconds(10);
    options.on_jwks_check = [this](const absl::Status&) {
      absl::MutexLock lock(&mutex_);
      ++count_;
    };
  }
  int count() {
    absl::MutexLock lock(&mutex_);
    return count_;
  }
  // True once `target` looks happened, false after 30 s.
  bool WaitFor(int target) {
    absl::MutexLock lock(&mutex_);
    auto reached = [this, target]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return count_ >= target; };
    return mutex_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }

 private:
  absl::Mutex mutex_;
  int count_ ABSL_GUARDED_BY(mutex_) = 0;
};

TEST_F(JwtVerifierTest, PicksUpRotatedJwksInTheBackground) {
  JwksChecks checks;
  JwtVerifierOptions options = Options();
  checks.Install(options);
  auto verifier = Make(options);
  ASSERT_NE(verifier, nullptr);
  std::string rotated = SignRs256(Header("RS256", "rsa-2"), Claims(), *rotated_rsa_);
  EXPECT_EQ(Refusal(verifier->Verify(rotated)), AuthRefusal::kUnknownKey);

  WriteJwks({PublicJwk(*rotated_rsa_), PublicJwk(*ec_)});
  // One look may have been under way during the write; the one after it began later.
  ASSERT_TRUE(checks.WaitFor(checks.count() + 2));
  absl::StatusOr<Identity> identity = verifier->Verify(rotated);
  EXPECT_TRUE(identity.ok()) << identity.status();
  // The retired key is gone.
  EXPECT_EQ(Refusal(verifier->Verify(SignRs256(Header("RS256", "rsa-1"), Claims(), *rsa_))),
            AuthRefusal::kUnknownKey);
}

// A file whose read hangs (a FIFO stands in for a stuck network volume) holds up the JWKS thread
// only: Verify() goes on with the keys in force, and the new keys count once the read ends.
TEST_F(JwtVerifierTest, VerifyNeverWaitsForAJwksReadThatHangs) {
  JwksChecks checks;
  JwtVerifierOptions options = Options();
  checks.Install(options);
  auto verifier = Make(options);
  ASSERT_NE(verifier, nullptr);
  const std::string current = SignRs256(Header("RS256", "rsa-1"), Claims(), *rsa_);
  const std::string rotated = SignRs256(Header("RS256", "rsa-2"), Claims(), *rotated_rsa_);

  const std::string fifo = dir_ + "/jwks.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::filesystem::rename(fifo, jwks_path_);
  absl::Notification reader_blocked;
  absl::Notification finish_read;
  const std::string rotated_jwks = absl::StrCat(R"({"keys":[)", PublicJwk(*rotated_rsa_), "]}");
  std::thread writer([&] {
    // Opening for writing waits for the reader: the JWKS thread is now inside the file.
    const int fd = open(jwks_path_.c_str(), O_WRONLY | O_CLOEXEC);
    reader_blocked.Notify();
    finish_read.WaitForNotification();
    if (fd >= 0) {
      EXPECT_EQ(write(fd, rotated_jwks.data(), rotated_jwks.size()),
                static_cast<ssize_t>(rotated_jwks.size()));
      close(fd);
    }
  });
  const bool blocked = reader_blocked.WaitForNotificationWithTimeout(absl::Seconds(30));
  EXPECT_TRUE(blocked);
  if (blocked) {
    EXPECT_TRUE(verifier->Verify(current).ok());
    EXPECT_EQ(Refusal(verifier->Verify(rotated)), AuthRefusal::kUnknownKey);
  } else {
    // Let the writer's open return so the test can end.
    close(open(jwks_path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  }
  // A regular file goes back in place before the read ends, so the next look finds that.
  const int before = checks.count();
  WriteJwks({PublicJwk(*rotated_rsa_)});
  finish_read.Notify();
  writer.join();
  ASSERT_TRUE(checks.WaitFor(before + 2));
  EXPECT_TRUE(verifier->Verify(rotated).ok());
  EXPECT_EQ(Refusal(verifier->Verify(current)), AuthRefusal::kUnknownKey);
}

TEST_F(JwtVerifierTest, ExplicitReloadAndBrokenFileKeepsPreviousKeys) {
  JwtVerifierOptions options = Options();
  options.jwks_check_interval = absl::ZeroDuration();  // only explicit reloads
  auto verifier = Make(options);
  ASSERT_NE(verifier, nullptr);
  std::string rotated = SignRs256(Header("RS256", "rsa-2"), Claims(), *rotated_rsa_);
  std::string current = SignRs256(Header("RS256", "rsa-1"), Claims(), *rsa_);

  WriteJwks({PublicJwk(*rsa_), PublicJwk(*rotated_rsa_)});
  now_ += absl::Seconds(10);
  EXPECT_EQ(Refusal(verifier->Verify(rotated)), AuthRefusal::kUnknownKey);  // not reloaded yet
  ASSERT_TRUE(verifier->ReloadJwksIfChanged().ok());
  EXPECT_TRUE(verifier->Verify(rotated).ok());
  EXPECT_TRUE(verifier->Verify(current).ok());

  WriteFile(jwks_path_, R"({"keys":[{"kty":"RSA",)");  // a half-written file
  EXPECT_FALSE(verifier->ReloadJwksIfChanged().ok());
  EXPECT_TRUE(verifier->Verify(rotated).ok());
  EXPECT_TRUE(verifier->Verify(current).ok());

  std::filesystem::remove(jwks_path_);
  EXPECT_FALSE(verifier->ReloadJwksIfChanged().ok());
  EXPECT_TRUE(verifier->Verify(current).ok());
}

TEST_F(JwtVerifierTest, VerifiesConcurrentlyWhileKeysRotate) {
  auto verifier = Make();
  ASSERT_NE(verifier, nullptr);
  WriteJwks({PublicJwk(*rsa_), PublicJwk(*rotated_rsa_), PublicJwk(*ec_)});
  std::string token = SignRs256(Header("RS256", "rsa-1"), Claims(), *rsa_);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!verifier->Verify(token).ok()) {
          ++failures;
        }
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(verifier->ReloadJwksIfChanged().ok());
    WriteJwks({PublicJwk(*rsa_), PublicJwk(i % 2 == 0 ? *ec_ : *rotated_rsa_)});
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(JwtVerifierTest, ReadsSecretFileWithoutTrailingNewline) {
  std::string secret_path = dir_ + "/secret";
  WriteFile(secret_path, std::string(kSecret) + "\n");
  JwtVerifierOptions options = Options();
  options.hs256_secret.clear();
  options.hs256_secret_file = secret_path;
  auto verifier = Make(options);
  ASSERT_NE(verifier, nullptr);
  EXPECT_TRUE(verifier->Verify(SignHs256(Header("HS256"), Claims(), kSecret)).ok());
}

TEST_F(JwtVerifierTest, CreateRefusesBrokenConfiguration) {
  JwtVerifierOptions nothing;
  EXPECT_FALSE(JwtVerifier::Create(nothing).ok());

  JwtVerifierOptions short_secret;
  short_secret.hs256_secret = "too-short";
  EXPECT_EQ(JwtVerifier::Create(short_secret).status().code(), absl::StatusCode::kInvalidArgument);

  JwtVerifierOptions missing_secret_file;
  missing_secret_file.hs256_secret_file = dir_ + "/absent";
  EXPECT_FALSE(JwtVerifier::Create(missing_secret_file).ok());

  JwtVerifierOptions missing_jwks;
  missing_jwks.jwks_file = dir_ + "/absent.json";
  EXPECT_FALSE(JwtVerifier::Create(missing_jwks).ok());

  JwtVerifierOptions weak_rsa;
  weak_rsa.jwks_file = jwks_path_;
  WriteJwks({PublicJwk(GenerateRsaKey("weak", 1024))});
  absl::Status weak = JwtVerifier::Create(weak_rsa).status();
  EXPECT_EQ(weak.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(weak.message().find("2048"), absl::string_view::npos) << weak;
}

TEST(AuthRefusalTest, LabelsRoundTripThroughStatus) {
  for (AuthRefusal refusal :
       {AuthRefusal::kMissingToken, AuthRefusal::kMalformed, AuthRefusal::kBadSignature,
        AuthRefusal::kExpired, AuthRefusal::kNotYetValid, AuthRefusal::kWrongIssuer,
        AuthRefusal::kWrongAudience, AuthRefusal::kUnsupportedAlg, AuthRefusal::kUnknownKey}) {
    absl::Status status = AuthRefusalError(refusal, "detail");
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(RefusalOf(status), refusal);
  }
  EXPECT_EQ(AuthRefusalLabel(AuthRefusal::kWrongAudience), "wrong_audience");
  EXPECT_EQ(RefusalOf(absl::OkStatus()), std::nullopt);
  EXPECT_EQ(RefusalOf(absl::UnauthenticatedError("x")), std::nullopt);
}

}  // namespace
}  // namespace parley::edge
