#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace parley::edge {

// Base64url (RFC 4648 section 5) as JWS compact serialization uses it: no padding on encode;
// on decode, padding is refused because RFC 7515 forbids it in compact tokens, and so are
// characters outside the URL-safe alphabet and non-canonical trailing bits, so each token has
// exactly one accepted spelling.
std::string Base64UrlEncode(std::string_view bytes);
std::optional<std::string> Base64UrlDecode(std::string_view text);

}  // namespace parley::edge
