#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
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

// Whether a listening socket could bind `address` now: OK, or why not
// ("127.0.0.1:8080 is already in use"). For explaining a failed listen when the
// server library that failed says only that it did.
absl::Status CheckCanListen(const HostPort& address);

}  // namespace parley::common
