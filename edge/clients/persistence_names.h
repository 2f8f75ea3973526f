#pragma once

#include <string>

#include "parley/persistence/v1/conversation_service.pb.h"

namespace parley::edge {

// The names clients see for persistence's enums, shared by the socket's history frames and the
// HTTP API so both spell a role or a status the same way.

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

}  // namespace parley::edge
