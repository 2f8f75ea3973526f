#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::common {

// A listen or connect address written HOST:PORT ("[::1]:80" for IPv6).
struct HostPort {
  std::string host;
  uint16_t port = 0;

  std::string ToString() const;
};

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

}  // namespace parley::common
