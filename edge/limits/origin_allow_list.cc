#include "edge/limits/origin_allow_list.h"

#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace parley::edge {
namespace {

struct ParsedOrigin {
  std::string scheme;
  std::string host;
  int port = -1;
};

int DefaultPort(std::string_view scheme) {
  if (scheme == "http" || scheme == "ws") {
    return 80;
  }
  if (scheme == "https" || scheme == "wss") {
    return 443;
  }
  return -1;
}

std::string Lower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// Parses "scheme://host[:port]" as browsers serialise an origin (RFC 6454). With
// `allow_wildcard`, the host may start with "*.". nullopt on anything else.
std::optional<ParsedOrigin> ParseOrigin(std::string_view text, bool allow_wildcard) {
  size_t separator = text.find("://");
  if (separator == std::string_view::npos || separator == 0) {
    return std::nullopt;
  }
  ParsedOrigin origin;
  origin.scheme = Lower(text.substr(0, separator));
  for (char c : origin.scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return std::nullopt;
    }
  }
  std::string_view rest = text.substr(separator + 3);
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {  // IPv6 literal
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    host = rest.substr(0, close + 1);
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return std::nullopt;
      }
      port = rest.substr(1);
    }
  } else {
    size_t colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
    }
    std::string_view check = host;
    if (allow_wildcard && check.substr(0, 2) == "*.") {
      check.remove_prefix(2);
    }
    if (check.empty()) {
      return std::nullopt;
    }
    for (char c : check) {
      if (!IsHostChar(c)) {
        return std::nullopt;
      }
    }
  }
  if (host.empty()) {
    return std::nullopt;
  }
  origin.host = Lower(host);
  if (port.empty()) {
    origin.port = DefaultPort(origin.scheme);
  } else {
    if (port.size() > 5) {
      return std::nullopt;
    }
    int value = 0;
    for (char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c))) {
        return std::nullopt;
      }
      value = value * 10 + (c - '0');
    }
    if (value > 65535) {
      return std::nullopt;
    }
    origin.port = value;
  }
  return origin;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

absl::StatusOr<OriginAllowList> OriginAllowList::Parse(std::string_view comma_separated) {
  std::vector<std::string> entries;
  while (!comma_separated.empty()) {
    size_t comma = comma_separated.find(',');
    std::string_view entry = TrimSpaces(comma_separated.substr(0, comma));
    if (!entry.empty()) {
      entries.emplace_back(entry);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    comma_separated.remove_prefix(comma + 1);
  }
  return FromEntries(entries);
}

absl::StatusOr<OriginAllowList> OriginAllowList::FromEntries(
    const std::vector<std::string>& entries) {
  OriginAllowList list;
  for (const std::string& raw : entries) {
    std::string_view entry = TrimSpaces(raw);
    if (entry.empty()) {
      continue;
    }
    list.listed_ = true;
    if (entry == "*") {
      list.allow_any_ = true;
      continue;
    }
    if (entry == "null") {
      list.allow_null_ = true;
      continue;
    }
    // An origin has no path, but "https://example.com/" is an easy slip worth forgiving.
    if (entry.size() > 1 && entry.back() == '/') {
      entry.remove_suffix(1);
    }
    std::optional<ParsedOrigin> parsed = ParseOrigin(entry, /*allow_wildcard=*/true);
    if (!parsed.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("origin allow list entry \"", raw,
                       "\" is not scheme://host[:port] or scheme://*.domain[:port]"));
    }
    Pattern pattern;
    pattern.scheme = parsed->scheme;
    pattern.port = parsed->port;
    if (parsed->host.rfind("*.", 0) == 0) {
      pattern.wildcard = true;
      pattern.host = parsed->host.substr(2);
    } else {
      pattern.host = parsed->host;
    }
    list.patterns_.push_back(std::move(pattern));
  }
  return list;
}

bool OriginAllowList::Allows(std::optional<std::string_view> origin) const {
  if (!listed_ || !origin.has_value() || allow_any_) {
    return true;
  }
  std::string_view value = TrimSpaces(*origin);
  if (value == "null") {
    return allow_null_;
  }
  std::optional<ParsedOrigin> parsed = ParseOrigin(value, /*allow_wildcard=*/false);
  if (!parsed.has_value()) {
    return false;
  }
  for (const Pattern& pattern : patterns_) {
    if (pattern.scheme != parsed->scheme || pattern.port != parsed->port) {
      continue;
    }
    if (!pattern.wildcard) {
      if (pattern.host == parsed->host) {
        return true;
      }
      continue;
    }
    // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com" or
    // "badexample.com".
    const std::string& host = parsed->host;
    if (host.size() > pattern.host.size() + 1 &&
        host.compare(host.size() - pattern.host.size(), pattern.host.size(), pattern.host) == 0 &&
        host[host.size() - pattern.host.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

}  // namespace parley::edge
