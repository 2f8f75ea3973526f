#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace parley::edge {

// gRPC and absl share the canonical code numbering, so the conversion is exact.
inline absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) {
    return absl::OkStatus();
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace parley::edge
