#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge/auth/jwks.h"

namespace parley::edge {

// Why a token was refused. The label of each value is meant for the `reason` label of
// `parley_edge_handshakes_refused_total`; it never contains token data.
enum class AuthRefusal {
  kMissingToken,    // "missing_token": no token in any accepted place
  kMalformed,       // "malformed": not a JWS, bad base64url or JSON, missing/ill-typed claim
  kBadSignature,    // "bad_signature"
  kExpired,         // "expired": exp (plus skew) has passed
  kNotYetValid,     // "not_yet_valid": nbf or iat lies in the future (beyond skew)
  kWrongIssuer,     // "wrong_issuer"
  kWrongAudience,   // "wrong_audience"
  kUnsupportedAlg,  // "unsupported_alg": none, unknown, or not configured on this server
  kUnknownKey,      // "unknown_key": no key in the JWKS matches the kid and algorithm
};

absl::string_view AuthRefusalLabel(AuthRefusal refusal);

// Builds the Unauthenticated status the verifier returns; the refusal rides as a payload so
// callers can recover it with RefusalOf().
absl::Status AuthRefusalError(AuthRefusal refusal, absl::string_view detail);

// The refusal carried by a status from JwtVerifier::Verify; nullopt for OK or foreign statuses.
std::optional<AuthRefusal> RefusalOf(const absl::Status& status);

// Who is on the other end of a connection. `user_id` is what persistence sees.
struct Identity {
  std::string user_id;     // the token's `sub`
  bool anonymous = false;  // never set by the verifier; for the server's development mode
  absl::Time expires_at = absl::InfiniteFuture();  // the token's `exp`, if any
  // The token's `name` claim, else its `preferred_username`; empty when it has neither.
  std::string display_name;
};

struct JwtVerifierOptions {
  // HS256: the shared secret, read from this file (trailing CR/LF stripped) at Create().
  std::string hs256_secret_file;
  // HS256 secret given directly; used when `hs256_secret_file` is empty. At least 32 bytes
  // (RFC 7518 section 3.2: the key must be as long as the hash output).
  std::string hs256_secret;
  // RS256 / ES256: the JWKS file, reloaded when its mtime, size or inode changes.
  std::string jwks_file;
  // Expected `iss`; empty means not checked.
  std::string issuer;
  // Expected `aud` (the token's `aud` may be a string or an array of strings); empty means not
  // checked.
  std::string audience;
  // Allowance for clocks that disagree between the token issuer and this server.
  absl::Duration clock_skew = absl::Seconds(30);
  // Tokens without `exp` would never expire; refuse them (as malformed) unless this is false.
  bool require_exp = true;
  // A thread of the verifier's own stats the JWKS file this often and reloads it when it
  // changed; Verify() never touches the file, so a slow or hung volume delays no connection.
  // Zero: no such thread; call ReloadJwksIfChanged() instead.
  absl::Duration jwks_check_interval = absl::Seconds(1);
  // Called by that thread after each look at the file, with what the look found (OK when nothing
  // changed or the new keys are in force). For tests.
  std::function<void(const absl::Status&)> on_jwks_check;
  // Current time; absl::Now when unset. Tests inject a fake.
  std::function<absl::Time()> clock;
};

// Verifies compact JWS tokens (RFC 7515/7519) signed with HS256, RS256 or ES256.
// Thread-safe: one instance is shared by all connections of an edge. Verify() does no file I/O
// and never waits for it: it reads an immutable key set, which the JWKS thread swaps by pointer.
class JwtVerifier {
 public:
  // Fails (InvalidArgument/NotFound) when no algorithm is configured, the secret is too short,
  // or the JWKS file is missing or unusable: broken auth configuration must stop start-up.
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(JwtVerifierOptions options);
  // Stops the JWKS thread.
  ~JwtVerifier();

  // On success the Identity of the token's subject; otherwise an Unauthenticated status whose
  // RefusalOf() says why. An empty token gives kMissingToken.
  absl::StatusOr<Identity> Verify(std::string_view token) const;

  // Re-reads the JWKS file if it changed since the last load. On a parse error the previous
  // keys stay in force and the error is returned (and logged). OK when nothing changed or no
  // JWKS file is configured.
  absl::Status ReloadJwksIfChanged() const;

  // Algorithms this instance accepts, e.g. "HS256,RS256,ES256" (for the start-up log).
  std::string AcceptedAlgorithms() const;

  // How far past its `exp` a token is still accepted.
  absl::Duration clock_skew() const { return options_.clock_skew; }

  JwtVerifier(const JwtVerifier&) = delete;
  JwtVerifier& operator=(const JwtVerifier&) = delete;

 private:
  struct FileStamp {
    int64_t mtime_ns = 0;
    int64_t size = 0;
    ino_t inode = 0;
    dev_t device = 0;
    bool operator==(const FileStamp&) const = default;
  };

  explicit JwtVerifier(JwtVerifierOptions options);

  std::shared_ptr<const KeySet> Keys() const;
  // The JWKS thread: looks at the file every jwks_check_interval until the destructor.
  void WatchJwks();
  absl::Status Reload(bool only_if_changed) const;
  absl::Status ReloadLocked(bool only_if_changed) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);

  const JwtVerifierOptions options_;

  // Serialises reloads (the JWKS thread's and ReloadJwksIfChanged()); Verify() never takes it.
  mutable absl::Mutex reload_mu_;
  mutable std::optional<FileStamp> loaded_stamp_ ABSL_GUARDED_BY(reload_mu_);

  absl::Mutex watch_mu_;
  bool stopping_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread watcher_;

  // Held only to copy or replace the pointer, never during I/O or verification.
  mutable absl::Mutex keys_mu_;
  mutable std::shared_ptr<const KeySet> keys_ ABSL_GUARDED_BY(keys_mu_);
};

}  // namespace parley::edge
