#pragma once

#include <string>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "parley/persistence/v1/conversation_service.pb.h"

namespace parley::edge {

// The names clients see for persistence's enums and times, shared by the socket's history frames
// and the HTTP API so both spell a role or a status the same way.

inline std::string RoleName(::parley::persistence::v1::Role role) {
  switch (role) {
    case ::parley::persistence::v1::ROLE_SYSTEM:
      return "system";
    case ::parley::persistence::v1::ROLE_ASSISTANT:
      return "assistant";
    default:
      return "user";
  }
}

inline std::string StatusName(::parley::persistence::v1::MessageStatus status) {
  switch (status) {
    case ::parley::persistence::v1::MESSAGE_STATUS_STREAMING:
      return "streaming";
    case ::parley::persistence::v1::MESSAGE_STATUS_CANCELLED:
      return "cancelled";
    case ::parley::persistence::v1::MESSAGE_STATUS_INTERRUPTED:
      return "interrupted";
    case ::parley::persistence::v1::MESSAGE_STATUS_ERROR:
      return "error";
    default:
      return "complete";
  }
}

// A stored time as clients see it: RFC 3339 in UTC with milliseconds, "2024-05-01T12:00:00.123Z";
// "" when persistence did not set it.
inline std::string Rfc3339(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) {
    return "";
  }
  const absl::Time time =
      absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

}  // namespace parley::edge
