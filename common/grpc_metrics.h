#pragma once

#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/registry.h"

namespace parley::common {

// Latency buckets shared by every Parley histogram: a chat turn is judged in
// milliseconds, so the fine end starts at half a millisecond and the coarse end
// stops at ten seconds (anything longer is a stream, seen in the +Inf bucket).
const std::vector<double>& LatencyBuckets();

// Server-side gRPC metrics for one service, registered in `registry`:
//   parley_<service>_grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   parley_<service>_grpc_server_handled_total{grpc_service,grpc_method,grpc_code}
//   parley_<service>_grpc_server_handling_seconds{grpc_service,grpc_method}
//   parley_<service>_grpc_server_streams_in_flight{grpc_service,grpc_method}
//   parley_<service>_grpc_server_msg_received_total{grpc_service,grpc_method}
//   parley_<service>_grpc_server_msg_sent_total{grpc_service,grpc_method}
// `service` is the short name ("inference", "persistence"). The factory is
// handed to grpc::ServerBuilder, which owns it for the server's lifetime.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeServerMetricsInterceptorFactory(std::shared_ptr<prometheus::Registry> registry,
                                    const std::string& service);

// Logs one JSON line per finished RPC ("rpc finished": grpc_method, grpc_code,
// duration_ms, and trace_id when the caller sent a `traceparent`). Health
// checks and reflection are skipped. Server-fault codes log as warnings.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeServerCallLogInterceptorFactory();

// The same for the calling side, as parley_<service>_grpc_client_* (the edge
// uses "edge"): started, handled by code, handling seconds and messages.
std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>
MakeClientMetricsInterceptorFactory(std::shared_ptr<prometheus::Registry> registry,
                                    const std::string& service);

// Creates an insecure channel to `target` whose calls are counted in `registry`
// under parley_<service>_grpc_client_*. The channel balances calls round-robin
// over every address the target resolves to, so "dns:///name-headless:50051"
// spreads streams over all pods behind a headless Service. A null registry
// gives a plain channel with the same balancing. `args` may carry more channel
// settings; its load-balancing configuration is replaced.
std::shared_ptr<grpc::Channel> CreateInstrumentedChannel(
    const std::string& target, std::shared_ptr<prometheus::Registry> registry,
    const std::string& service, grpc::ChannelArguments args = grpc::ChannelArguments());

}  // namespace parley::common
