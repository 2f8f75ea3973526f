#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace parley::edge {

// Decides which browser origins may open a WebSocket (defence against cross-site WebSocket
// hijacking: a page on another site riding the user's credentials).
//
// Entries (comma-separated in the flag):
//   https://chat.example.com        exact origin; default ports (80/443) may be written or not
//   http://localhost:3000           exact origin with a port
//   https://*.example.com           any subdomain, at any depth, of example.com over https —
//                                   not example.com itself (list it too if wanted)
//   *                               any origin
// Scheme and host compare case-insensitively; a port other than the scheme's default must
// match exactly; paths are not allowed.
//
// An empty list allows every origin: that is the development default, and the server should
// log a warning when it starts without a list.
//
// A request WITHOUT an Origin header is allowed. Browsers always send Origin on a WebSocket
// handshake, so the requests the check protects against always carry one; a missing header
// means a non-browser client (native app, CLI, server), for which Origin proves nothing — it
// could send any value. Such clients are still subject to authentication. The literal origin
// "null" (sandboxed frames, file: pages) is refused unless the list contains "null".
class OriginAllowList {
 public:
  // An empty list (allow all).
  OriginAllowList() = default;

  // Parses comma-separated entries; InvalidArgument on a malformed one, naming it.
  static absl::StatusOr<OriginAllowList> Parse(std::string_view comma_separated);
  static absl::StatusOr<OriginAllowList> FromEntries(const std::vector<std::string>& entries);

  // `origin` is the Origin header value, nullopt when the request has none.
  bool Allows(std::optional<std::string_view> origin) const;

  // True when no entry was given, i.e. every origin is allowed.
  bool empty() const { return !listed_; }

 private:
  struct Pattern {
    std::string scheme;  // "http" or "https", lower case
    std::string host;    // lower case; for wildcards the suffix after "*." (e.g. "example.com")
    int port = -1;       // effective port (the scheme's default filled in); -1 if none
    bool wildcard = false;
  };

  bool allow_any_ = false;
  bool allow_null_ = false;
  bool listed_ = false;  // any entry was given at all
  std::vector<Pattern> patterns_;
};

}  // namespace parley::edge
