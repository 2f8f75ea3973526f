#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "prometheus/registry.h"

namespace parley::common {

struct GrpcServerOptions {
  std::string listen;  // HOST:PORT; port 0 picks a free port.
  std::vector<grpc::Service*> services;
  // Connections older than this are asked to reconnect (GOAWAY), so long-lived
  // clients spread over replicas that started later. 0 disables.
  int max_connection_age_ms = 0;
  // When set, every RPC is counted in this registry as
  // parley_<metrics_service>_grpc_server_* (see common/grpc_metrics.h).
  std::shared_ptr<prometheus::Registry> metrics_registry;
  std::string metrics_service;
  // One log line per finished RPC, with the caller's trace id (health checks
  // excepted); see MakeServerCallLogInterceptorFactory.
  bool log_calls = true;
};

struct RunningGrpcServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

// Builds and starts a server with `grpc.health.v1` and server reflection
// enabled. The health status starts NOT_SERVING; call SetServing() when ready.
absl::StatusOr<RunningGrpcServer> StartGrpcServer(const GrpcServerOptions& options);

// Sets the overall health status and that of every service.
void SetServing(grpc::Server& server, bool serving);

}  // namespace parley::common
