#include "edge/auth/authenticator.h"

#include <utility>

namespace parley::edge {

Authenticator::Authenticator(std::shared_ptr<const JwtVerifier> verifier, bool allow_anonymous)
    : verifier_(std::move(verifier)), allow_anonymous_(allow_anonymous) {}

absl::StatusOr<Identity> Authenticator::Authenticate(const ExtractedToken& token) const {
  if (token.location == TokenLocation::kNone || token.token.empty()) {
    if (allow_anonymous_) {
      return Identity{.user_id = "", .anonymous = true};
    }
    return AuthRefusalError(AuthRefusal::kMissingToken, "no token");
  }
  if (verifier_ == nullptr) {
    return AuthRefusalError(AuthRefusal::kUnsupportedAlg, "no token verification configured");
  }
  return verifier_->Verify(token.token);
}

absl::Time Authenticator::ValidUntil(const Identity& identity) const {
  if (identity.anonymous || verifier_ == nullptr) {
    return absl::InfiniteFuture();
  }
  return identity.expires_at + verifier_->clock_skew();
}

absl::StatusOr<Identity> Authenticator::Authenticate(std::string_view target,
                                                     std::string_view authorization,
                                                     std::string_view websocket_protocol) const {
  return Authenticate(ExtractToken(target, authorization, websocket_protocol));
}

absl::StatusOr<Identity> Authenticator::Authenticate(
    const boost::beast::http::request<boost::beast::http::string_body>& request) const {
  return Authenticate(ExtractToken(request));
}

}  // namespace parley::edge
