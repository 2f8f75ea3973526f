#include "edge/auth/jwt_verifier.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <cmath>
#include <fstream>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "edge/auth/base64url.h"

namespace parley::edge {
namespace {

constexpr absl::string_view kRefusalPayloadUrl = "type.parley.dev/parley.edge.AuthRefusal";
// Far larger than any sensible bearer token, small enough that a hostile header costs little.
constexpr size_t kMaxTokenBytes = 16 * 1024;
constexpr size_t kMinSecretBytes = 32;
constexpr size_t kMaxSecretFileBytes = 64 * 1024;
constexpr size_t kSha256Bytes = 32;
constexpr size_t kEs256SignatureBytes = 64;
// Persistence keeps user ids of at most 128 bytes; a longer `sub` could never store anything.
constexpr size_t kMaxSubjectBytes = 128;

// A user id is logged, shown and compared byte for byte: no control characters in it.
bool HasControlCharacter(std::string_view text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      return true;
    }
  }
  return false;
}

enum class Algorithm { kHs256, kRs256, kEs256 };

struct PkeyCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct EcdsaSigDeleter {
  void operator()(ECDSA_SIG* sig) const { ECDSA_SIG_free(sig); }
};

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::StatusOr<boost::json::object> ParseJsonObject(std::string_view encoded,
                                                    absl::string_view part) {
  std::optional<std::string> decoded = Base64UrlDecode(encoded);
  if (!decoded.has_value()) {
    return AuthRefusalError(AuthRefusal::kMalformed, absl::StrCat(part, " is not base64url"));
  }
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(*decoded, ec);
  if (ec || !value.is_object()) {
    return AuthRefusalError(AuthRefusal::kMalformed, absl::StrCat(part, " is not a JSON object"));
  }
  return std::move(value.get_object());
}

// A NumericDate (RFC 7519 section 2): seconds since the epoch, integer or fractional.
// nullopt when the claim is absent; an error when it is not a number.
absl::StatusOr<std::optional<absl::Time>> NumericDate(const boost::json::object& claims,
                                                      std::string_view name) {
  const boost::json::value* value = claims.if_contains(name);
  if (value == nullptr) {
    return std::optional<absl::Time>();
  }
  if (value->is_int64()) {
    return std::optional<absl::Time>(absl::FromUnixSeconds(value->get_int64()));
  }
  if (value->is_uint64()) {  // only values above INT64_MAX land here
    return std::optional<absl::Time>(absl::InfiniteFuture());
  }
  if (value->is_double()) {
    double seconds = value->get_double();
    // Beyond year 30000 either way counts as infinite, which keeps the conversion exact enough.
    if (seconds > 1e12) {
      return std::optional<absl::Time>(absl::InfiniteFuture());
    }
    if (seconds < -1e12) {
      return std::optional<absl::Time>(absl::InfinitePast());
    }
    return std::optional<absl::Time>(
        absl::FromUnixMicros(static_cast<int64_t>(std::llround(seconds * 1e6))));
  }
  return AuthRefusalError(AuthRefusal::kMalformed,
                          absl::StrCat("claim ", AbslView(name), " is not a number"));
}

bool VerifyHs256(std::string_view secret, std::string_view signing_input,
                 std::string_view signature) {
  if (signature.size() != kSha256Bytes) {
    return false;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t mac_len = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                Bytes(signing_input), signing_input.size(), mac, sizeof(mac),
                &mac_len) == nullptr ||
      mac_len != kSha256Bytes) {
    return false;
  }
  // Constant time, so the comparison does not leak how many leading bytes matched.
  return CRYPTO_memcmp(mac, signature.data(), kSha256Bytes) == 0;
}

// JWS carries ES256 signatures as the raw 32-byte r and s (RFC 7518 section 3.4); OpenSSL
// verifies the ASN.1 DER ECDSA-Sig-Value, so convert.
std::optional<std::string> RawEcdsaToDer(std::string_view raw) {
  if (raw.size() != kEs256SignatureBytes) {
    return std::nullopt;
  }
  std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(Bytes(raw), 32, nullptr);
  BIGNUM* s = BN_bin2bn(Bytes(raw) + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  int length = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (length <= 0) {
    return std::nullopt;
  }
  std::string der(static_cast<size_t>(length), '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &out) != length) {
    return std::nullopt;
  }
  return der;
}

bool VerifyWithPublicKey(EVP_PKEY* pkey, std::string_view signing_input,
                         std::string_view signature) {
  std::unique_ptr<EVP_MD_CTX, PkeyCtxDeleter> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), Bytes(signature), signature.size(), Bytes(signing_input),
                          signing_input.size()) == 1;
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open JWT secret file ", path));
  }
  std::string secret(kMaxSecretFileBytes + 1, '\0');
  in.read(secret.data(), static_cast<std::streamsize>(secret.size()));
  secret.resize(static_cast<size_t>(in.gcount()));
  if (secret.size() > kMaxSecretFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("JWT secret file ", path, " is too large"));
  }
  // `echo secret > file` adds a newline nobody means to be part of the key.
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
    secret.pop_back();
  }
  return secret;
}

}  // namespace

absl::string_view AuthRefusalLabel(AuthRefusal refusal) {
  switch (refusal) {
    case AuthRefusal::kMissingToken:
      return "missing_token";
    case AuthRefusal::kMalformed:
      return "malformed";
    case AuthRefusal::kBadSignature:
      return "bad_signature";
    case AuthRefusal::kExpired:
      return "expired";
    case AuthRefusal::kNotYetValid:
      return "not_yet_valid";
    case AuthRefusal::kWrongIssuer:
      return "wrong_issuer";
    case AuthRefusal::kWrongAudience:
      return "wrong_audience";
    case AuthRefusal::kUnsupportedAlg:
      return "unsupported_alg";
    case AuthRefusal::kUnknownKey:
      return "unknown_key";
  }
  return "malformed";
}

absl::Status AuthRefusalError(AuthRefusal refusal, absl::string_view detail) {
  absl::Status status = absl::UnauthenticatedError(detail);
  status.SetPayload(kRefusalPayloadUrl, absl::Cord(AuthRefusalLabel(refusal)));
  return status;
}

std::optional<AuthRefusal> RefusalOf(const absl::Status& status) {
  if (status.ok()) {
    return std::nullopt;
  }
  auto payload = status.GetPayload(kRefusalPayloadUrl);
  if (!payload.has_value()) {
    return std::nullopt;
  }
  std::string label(*payload);
  for (AuthRefusal refusal :
       {AuthRefusal::kMissingToken, AuthRefusal::kMalformed, AuthRefusal::kBadSignature,
        AuthRefusal::kExpired, AuthRefusal::kNotYetValid, AuthRefusal::kWrongIssuer,
        AuthRefusal::kWrongAudience, AuthRefusal::kUnsupportedAlg, AuthRefusal::kUnknownKey}) {
    if (AuthRefusalLabel(refusal) == label) {
      return refusal;
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(JwtVerifierOptions options) {
  if (!options.hs256_secret_file.empty()) {
    absl::StatusOr<std::string> secret = ReadSecretFile(options.hs256_secret_file);
    if (!secret.ok()) {
      return secret.status();
    }
    options.hs256_secret = *std::move(secret);
  }
  if (options.hs256_secret_file.empty() && options.hs256_secret.empty() &&
      options.jwks_file.empty()) {
    return absl::InvalidArgumentError("JWT verification needs a secret file or a JWKS file");
  }
  if ((!options.hs256_secret_file.empty() || !options.hs256_secret.empty()) &&
      options.hs256_secret.size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the HS256 secret must be at least ", kMinSecretBytes, " bytes"));
  }
  if (options.clock_skew < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("clock skew must not be negative");
  }
  if (!options.clock) {
    options.clock = [] { return absl::Now(); };
  }
  std::unique_ptr<JwtVerifier> verifier(new JwtVerifier(std::move(options)));
  if (!verifier->options_.jwks_file.empty()) {
    absl::Status loaded = verifier->Reload(/*only_if_changed=*/false);
    if (!loaded.ok()) {
      return loaded;
    }
    if (verifier->options_.jwks_check_interval > absl::ZeroDuration()) {
      verifier->watcher_ = std::thread([raw = verifier.get()] { raw->WatchJwks(); });
    }
  }
  return verifier;
}

JwtVerifier::JwtVerifier(JwtVerifierOptions options) : options_(std::move(options)) {}

std::string JwtVerifier::AcceptedAlgorithms() const {
  std::vector<std::string> algorithms;
  if (!options_.hs256_secret.empty()) {
    algorithms.push_back("HS256");
  }
  if (!options_.jwks_file.empty()) {
    algorithms.push_back("RS256");
    algorithms.push_back("ES256");
  }
  return absl::StrJoin(algorithms, ",");
}

std::shared_ptr<const KeySet> JwtVerifier::Keys() const {
  absl::MutexLock lock(&keys_mu_);
  return keys_;
}

absl::Status JwtVerifier::ReloadJwksIfChanged() const { return Reload(/*only_if_changed=*/true); }

absl::Status JwtVerifier::Reload(bool only_if_changed) const {
  if (options_.jwks_file.empty()) {
    return absl::OkStatus();
  }
  absl::MutexLock reload_lock(&reload_mu_);
  return ReloadLocked(only_if_changed);
}

absl::Status JwtVerifier::ReloadLocked(bool only_if_changed) const {
  struct stat st;
  if (::stat(options_.jwks_file.c_str(), &st) != 0) {
    absl::Status error =
        absl::NotFoundError(absl::StrCat("cannot stat JWKS file ", options_.jwks_file));
    if (loaded_stamp_.has_value()) {
      common::LogWarning("jwks reload failed; keeping previous keys",
                         {{"error", std::string(error.message())}});
    }
    return error;
  }
  FileStamp stamp{
      .mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
      .size = static_cast<int64_t>(st.st_size),
      .inode = st.st_ino,
      .device = st.st_dev,
  };
  if (only_if_changed && loaded_stamp_ == stamp) {
    return absl::OkStatus();
  }
  absl::StatusOr<KeySet> set = LoadJwksFile(options_.jwks_file);
  if (!set.ok()) {
    if (loaded_stamp_.has_value()) {
      // Remember the broken version so it is not re-parsed every second; a fixed file has a new
      // stamp and is picked up.
      loaded_stamp_ = stamp;
      common::LogWarning("jwks reload failed; keeping previous keys",
                         {{"error", std::string(set.status().message())}});
    }
    return set.status();
  }
  std::string key_count = std::to_string(set->keys.size());
  auto keys = std::make_shared<const KeySet>(*std::move(set));
  {
    absl::MutexLock lock(&keys_mu_);
    keys_ = std::move(keys);
  }
  if (loaded_stamp_.has_value()) {
    common::LogInfo("jwks reloaded", {{"keys", key_count}});
  }
  loaded_stamp_ = stamp;
  return absl::OkStatus();
}

JwtVerifier::~JwtVerifier() {
  if (!watcher_.joinable()) {
    return;
  }
  {
    absl::MutexLock lock(&watch_mu_);
    stopping_ = true;
  }
  watcher_.join();
}

void JwtVerifier::WatchJwks() {
  while (true) {
    {
      absl::MutexLock lock(&watch_mu_);
      if (watch_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.jwks_check_interval)) {
        return;
      }
    }
    const absl::Status checked = ReloadJwksIfChanged();
    if (options_.on_jwks_check) {
      options_.on_jwks_check(checked);
    }
  }
}

absl::StatusOr<Identity> JwtVerifier::Verify(std::string_view token) const {
  if (token.empty()) {
    return AuthRefusalError(AuthRefusal::kMissingToken, "no token");
  }
  if (token.size() > kMaxTokenBytes) {
    return AuthRefusalError(AuthRefusal::kMalformed, "token too long");
  }
  size_t first_dot = token.find('.');
  size_t second_dot =
      first_dot == std::string_view::npos ? first_dot : token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos ||
      token.find('.', second_dot + 1) != std::string_view::npos) {
    return AuthRefusalError(AuthRefusal::kMalformed, "not a compact JWS");
  }
  std::string_view encoded_header = token.substr(0, first_dot);
  std::string_view encoded_claims = token.substr(first_dot + 1, second_dot - first_dot - 1);
  std::string_view signing_input = token.substr(0, second_dot);
  std::optional<std::string> signature = Base64UrlDecode(token.substr(second_dot + 1));
  if (!signature.has_value()) {
    return AuthRefusalError(AuthRefusal::kMalformed, "signature is not base64url");
  }
  absl::StatusOr<boost::json::object> header = ParseJsonObject(encoded_header, "header");
  if (!header.ok()) {
    return header.status();
  }
  absl::StatusOr<boost::json::object> claims = ParseJsonObject(encoded_claims, "claims");
  if (!claims.ok()) {
    return claims.status();
  }

  // The header decides nothing by itself: the algorithm must be one this server enabled, and
  // keys are chosen by type for that algorithm, never by what the token asks for.
  const boost::json::value* alg_value = header->if_contains("alg");
  if (alg_value == nullptr || !alg_value->is_string()) {
    return AuthRefusalError(AuthRefusal::kMalformed, "header has no alg");
  }
  // Extensions marked critical must be understood (RFC 7515 section 4.1.11); none are.
  if (header->contains("crit")) {
    return AuthRefusalError(AuthRefusal::kUnsupportedAlg, "critical header extensions");
  }
  const boost::json::string& alg_name = alg_value->get_string();
  Algorithm algorithm;
  if (alg_name == "HS256" && !options_.hs256_secret.empty()) {
    algorithm = Algorithm::kHs256;
  } else if ((alg_name == "RS256" || alg_name == "ES256") && !options_.jwks_file.empty()) {
    algorithm = alg_name == "RS256" ? Algorithm::kRs256 : Algorithm::kEs256;
  } else {
    return AuthRefusalError(AuthRefusal::kUnsupportedAlg, "algorithm not accepted");
  }

  absl::Time now = options_.clock();
  if (algorithm == Algorithm::kHs256) {
    if (!VerifyHs256(options_.hs256_secret, signing_input, *signature)) {
      return AuthRefusalError(AuthRefusal::kBadSignature, "signature does not verify");
    }
  } else {
    std::shared_ptr<const KeySet> keys = Keys();
    KeyType wanted = algorithm == Algorithm::kRs256 ? KeyType::kRsa : KeyType::kEcP256;
    const boost::json::value* kid_value = header->if_contains("kid");
    if (kid_value != nullptr && !kid_value->is_string()) {
      return AuthRefusalError(AuthRefusal::kMalformed, "kid is not a string");
    }
    std::string der;
    std::string_view wire_signature = *signature;
    if (algorithm == Algorithm::kEs256) {
      std::optional<std::string> converted = RawEcdsaToDer(*signature);
      if (!converted.has_value()) {
        return AuthRefusalError(AuthRefusal::kBadSignature, "ES256 signature is not 64 bytes");
      }
      der = *std::move(converted);
      wire_signature = der;
    }
    bool candidate_found = false;
    bool verified = false;
    for (const PublicKey& key : keys->keys) {
      if (key.type != wanted) {
        continue;
      }
      // With a kid, only that key may be used; without one, any key of the right type.
      if (kid_value != nullptr && key.kid != std::string_view(kid_value->get_string())) {
        continue;
      }
      candidate_found = true;
      if (VerifyWithPublicKey(key.pkey.get(), signing_input, wire_signature)) {
        verified = true;
        break;
      }
    }
    if (!candidate_found) {
      return AuthRefusalError(AuthRefusal::kUnknownKey, "no key for this kid and algorithm");
    }
    if (!verified) {
      return AuthRefusalError(AuthRefusal::kBadSignature, "signature does not verify");
    }
  }

  // Only now that the claims are known to come from the issuer do they mean anything.
  Identity identity;
  const boost::json::value* sub = claims->if_contains("sub");
  if (sub == nullptr || !sub->is_string() || sub->get_string().empty()) {
    return AuthRefusalError(AuthRefusal::kMalformed, "sub missing or empty");
  }
  const std::string_view subject(sub->get_string().data(), sub->get_string().size());
  if (subject.size() > kMaxSubjectBytes || HasControlCharacter(subject)) {
    return AuthRefusalError(AuthRefusal::kMalformed,
                            "sub is longer than 128 bytes or holds a control character");
  }
  identity.user_id = std::string(sub->get_string());
  // What others see of the user: OpenID Connect's `name`, else `preferred_username`.
  for (const char* claim : {"name", "preferred_username"}) {
    const boost::json::value* name = claims->if_contains(claim);
    if (name != nullptr && name->is_string() && !name->get_string().empty()) {
      identity.display_name = std::string(name->get_string());
      break;
    }
  }

  absl::StatusOr<std::optional<absl::Time>> exp = NumericDate(*claims, "exp");
  if (!exp.ok()) {
    return exp.status();
  }
  absl::StatusOr<std::optional<absl::Time>> nbf = NumericDate(*claims, "nbf");
  if (!nbf.ok()) {
    return nbf.status();
  }
  absl::StatusOr<std::optional<absl::Time>> iat = NumericDate(*claims, "iat");
  if (!iat.ok()) {
    return iat.status();
  }
  if (exp->has_value()) {
    if (now - options_.clock_skew >= **exp) {
      return AuthRefusalError(AuthRefusal::kExpired, "token expired");
    }
    identity.expires_at = **exp;
  } else if (options_.require_exp) {
    return AuthRefusalError(AuthRefusal::kMalformed, "exp missing");
  }
  if (nbf->has_value() && now + options_.clock_skew < **nbf) {
    return AuthRefusalError(AuthRefusal::kNotYetValid, "token not valid yet");
  }
  // A token issued in the future means a broken issuer clock or a forged-ahead token.
  if (iat->has_value() && now + options_.clock_skew < **iat) {
    return AuthRefusalError(AuthRefusal::kNotYetValid, "token issued in the future");
  }

  if (!options_.issuer.empty()) {
    const boost::json::value* iss = claims->if_contains("iss");
    if (iss == nullptr || !iss->is_string() ||
        std::string_view(iss->get_string()) != options_.issuer) {
      return AuthRefusalError(AuthRefusal::kWrongIssuer, "issuer not accepted");
    }
  }
  if (!options_.audience.empty()) {
    const boost::json::value* aud = claims->if_contains("aud");
    bool match = false;
    if (aud != nullptr && aud->is_string()) {
      match = std::string_view(aud->get_string()) == options_.audience;
    } else if (aud != nullptr && aud->is_array()) {
      for (const boost::json::value& entry : aud->get_array()) {
        if (entry.is_string() && std::string_view(entry.get_string()) == options_.audience) {
          match = true;
          break;
        }
      }
    }
    if (!match) {
      return AuthRefusalError(AuthRefusal::kWrongAudience, "audience not accepted");
    }
  }
  return identity;
}

}  // namespace parley::edge
