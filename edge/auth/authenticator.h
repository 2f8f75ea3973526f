#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "edge/auth/jwt_verifier.h"
#include "edge/auth/token_source.h"

namespace parley::edge {

// The one decision every entry point (WebSocket upgrade of any dialect, HTTP API) makes about a
// request: find its token and verify it, or — in development mode only — let a request that
// carries no token at all in as anonymous. A request that does carry a token must present a
// valid one even in development mode, so a broken client setup is noticed there too.
// Thread-safe; shared by all connections.
class Authenticator {
 public:
  // `verifier` may be null only with `allow_anonymous`; then any token is refused (there is
  // nothing to check it with) and requests without one are anonymous.
  Authenticator(std::shared_ptr<const JwtVerifier> verifier, bool allow_anonymous);

  // On success an Identity; when anonymous, `identity.anonymous` is true and `user_id` is empty
  // for the caller to fill in (e.g. from a development `userId` parameter or a random id).
  // On refusal an Unauthenticated status; RefusalOf() gives the metric label. Answer HTTP 401.
  absl::StatusOr<Identity> Authenticate(std::string_view target, std::string_view authorization,
                                        std::string_view websocket_protocol) const;
  absl::StatusOr<Identity> Authenticate(
      const boost::beast::http::request<boost::beast::http::string_body>& request) const;
  absl::StatusOr<Identity> Authenticate(const ExtractedToken& token) const;

  bool allow_anonymous() const { return allow_anonymous_; }

  // Until when a connection let in by `identity` may stay: its token's `exp` plus the allowed
  // clock skew (the last moment the token would still be accepted); never for an anonymous one.
  absl::Time ValidUntil(const Identity& identity) const;

 private:
  std::shared_ptr<const JwtVerifier> verifier_;
  bool allow_anonymous_;
};

}  // namespace parley::edge
