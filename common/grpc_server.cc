#include "common/grpc_server.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_metrics.h"
#include "common/host_port.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace parley::common {

absl::StatusOr<RunningGrpcServer> StartGrpcServer(const GrpcServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  // gRPC sets SO_REUSEPORT by default: a second server on a taken port would
  // start and share it with the first, each getting some of the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients ping every 10 s to notice a server that hangs (see the edge's channels); gRPC's
  // default would take pings more often than every 5 minutes for abuse and close the connection.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  for (grpc::Service* service : options.services) {
    builder.RegisterService(service);
  }
  if (options.max_connection_age_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, options.max_connection_age_ms);
    // Give in-flight streams time to finish after the GOAWAY.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 5 * 60 * 1000);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  if (options.metrics_registry != nullptr) {
    creators.push_back(
        MakeServerMetricsInterceptorFactory(options.metrics_registry, options.metrics_service));
  }
  if (options.log_calls) {
    creators.push_back(MakeServerCallLogInterceptorFactory());
  }
  if (!creators.empty()) {
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  RunningGrpcServer running;
  running.server = builder.BuildAndStart();
  if (running.server == nullptr || port == 0) {
    std::string reason;
    if (absl::StatusOr<HostPort> address = ParseHostPort(options.listen); address.ok()) {
      if (absl::Status bindable = CheckCanListen(*address); !bindable.ok()) {
        reason = absl::StrCat(": ", bindable.message());
      }
    }
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", options.listen, reason));
  }
  running.port = port;
  SetServing(*running.server, false);
  return running;
}

void SetServing(grpc::Server& server, bool serving) {
  if (grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService()) {
    health->SetServingStatus(serving);
  }
}

}  // namespace parley::common
