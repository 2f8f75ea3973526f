#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace parley::edge {

// Where a client may put its JWT when it opens a WebSocket (or calls the HTTP API):
//
//  1. `Authorization: Bearer <token>` — for clients that can set headers (native apps, servers,
//     Socket.IO clients with extraHeaders). The scheme is matched case-insensitively.
//  2. `Sec-WebSocket-Protocol: parley.v1, bearer.<token>` — for browsers, whose WebSocket API
//     cannot set headers but can offer subprotocols. A JWT is made of base64url and dots, all
//     valid in a subprotocol token. The server answers with the dialect's own subprotocol only
//     (see OffersSubprotocol); it never echoes the `bearer.` entry, so the token does not come
//     back in the response. A browser fails the handshake if it offered subprotocols and the
//     answer names none, so a client using this place must also offer `parley.v1`.
//  3. `?token=<token>` in the request target (percent-decoded) — for clients that can do
//     neither. Query strings end up in proxy access logs, so prefer 1 or 2.
//
// The first place that holds a token wins, in the order above; the others are not looked at.
// An empty value, or the literal "null" or "undefined" (a client's unset variable), is no token:
// the next place is looked at, and with none the request is anonymous (development mode only).
// A dialect may allow fewer places (TokenPlaces), or one more inside its own protocol.
enum class TokenLocation { kNone, kAuthorizationHeader, kSubprotocol, kQueryParameter };

// The places of a request a dialect's clients may put their token in.
struct TokenPlaces {
  bool authorization_header = true;
  bool subprotocol = true;
  bool query_parameter = true;
  // Socket.IO's CONNECT packet (`auth.token`): the dialect's session authenticates, after the
  // upgrade, with what it finds there or in the places above.
  bool connect_packet = false;
};

struct ExtractedToken {
  std::string token;  // empty when location == kNone
  TokenLocation location = TokenLocation::kNone;
};

// `target` is the request target ("/ws/chat?token=..."); the header arguments are the raw
// header values, empty when absent (several Sec-WebSocket-Protocol headers may be joined with
// ", " as RFC 9110 allows).
ExtractedToken ExtractToken(std::string_view target, std::string_view authorization,
                            std::string_view websocket_protocol, const TokenPlaces& places = {});

// Same, reading the headers from a Beast request (all Sec-WebSocket-Protocol lines).
ExtractedToken ExtractToken(
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    const TokenPlaces& places = {});

// True when `wanted` is one of the entries of a Sec-WebSocket-Protocol offer. The handshake
// answers with `wanted` alone, never with a `bearer.` entry.
bool OffersSubprotocol(std::string_view websocket_protocol, std::string_view wanted);

}  // namespace parley::edge
