#include "edge/auth/token_source.h"

#include <boost/beast/http/field.hpp>

namespace parley::edge {
namespace {

constexpr std::string_view kBearerPrefix = "bearer.";

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
    if (x != y) {
      return false;
    }
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Invalid escapes are kept literally: the verifier then refuses the token as malformed, which
// is the right answer and needs no separate error path here.
std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string_view BearerFromAuthorization(std::string_view authorization) {
  authorization = Trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme) ||
      !IsSpace(authorization[kScheme.size()])) {
    return {};
  }
  return Trim(authorization.substr(kScheme.size()));
}

// Calls `visit` with each trimmed, non-empty entry of a comma-separated header value; stops
// when it returns true.
template <typename Visit>
void ForEachListEntry(std::string_view list, Visit visit) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view entry = Trim(list.substr(0, comma));
    if (!entry.empty() && visit(entry)) {
      return;
    }
    if (comma == std::string_view::npos) {
      return;
    }
    list.remove_prefix(comma + 1);
  }
}

std::string_view BearerFromSubprotocols(std::string_view websocket_protocol) {
  std::string_view token;
  ForEachListEntry(websocket_protocol, [&](std::string_view entry) {
    if (entry.size() > kBearerPrefix.size() &&
        EqualsIgnoreCase(entry.substr(0, kBearerPrefix.size()), kBearerPrefix)) {
      token = entry.substr(kBearerPrefix.size());
      return true;
    }
    return false;
  });
  return token;
}

std::string TokenFromQuery(std::string_view target) {
  size_t question = target.find('?');
  if (question == std::string_view::npos) {
    return {};
  }
  std::string_view query = target.substr(question + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == "token") {
      return PercentDecode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) {
      break;
    }
    query.remove_prefix(amp + 1);
  }
  return {};
}

// What a client sends where it has no token yet: `token=${token}` and `Bearer ${token}` with an
// unset variable give "null" or "undefined". Taken as no token rather than refused as a bad one.
bool IsNoToken(std::string_view token) {
  return token.empty() || token == "null" || token == "undefined";
}

}  // namespace

ExtractedToken ExtractToken(std::string_view target, std::string_view authorization,
                            std::string_view websocket_protocol, const TokenPlaces& places) {
  if (std::string_view token =
          places.authorization_header ? BearerFromAuthorization(authorization) : "";
      !IsNoToken(token)) {
    return {std::string(token), TokenLocation::kAuthorizationHeader};
  }
  if (std::string_view token = places.subprotocol ? BearerFromSubprotocols(websocket_protocol) : "";
      !IsNoToken(token)) {
    return {std::string(token), TokenLocation::kSubprotocol};
  }
  if (std::string token = places.query_parameter ? TokenFromQuery(target) : ""; !IsNoToken(token)) {
    return {std::move(token), TokenLocation::kQueryParameter};
  }
  return {};
}

ExtractedToken ExtractToken(
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    const TokenPlaces& places) {
  namespace http = boost::beast::http;
  std::string protocols;
  auto range = request.equal_range(http::field::sec_websocket_protocol);
  for (auto it = range.first; it != range.second; ++it) {
    if (!protocols.empty()) {
      protocols += ", ";
    }
    protocols.append(it->value().data(), it->value().size());
  }
  auto authorization = request[http::field::authorization];
  auto target = request.target();
  return ExtractToken(std::string_view(target.data(), target.size()),
                      std::string_view(authorization.data(), authorization.size()), protocols,
                      places);
}

bool OffersSubprotocol(std::string_view websocket_protocol, std::string_view wanted) {
  bool offered = false;
  ForEachListEntry(websocket_protocol, [&](std::string_view entry) {
    offered = entry == wanted;
    return offered;
  });
  return offered;
}

}  // namespace parley::edge
