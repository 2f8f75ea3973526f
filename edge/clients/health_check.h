#pragma once

#include <functional>
#include <memory>

#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace parley::edge {

// Asks a backend's standard grpc.health.v1 service for the overall status.
// `done(true)` only for SERVING; any error or other status is false. Runs the
// callback on a gRPC thread.
void CheckServing(const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout,
                  std::function<void(bool serving)> done);

}  // namespace parley::edge
