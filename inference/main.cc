#include <cstdlib>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/grpc_server.h"
#include "common/host_port.h"
#include "common/log.h"
#include "common/metrics_endpoint.h"
#include "common/shutdown_signal.h"
#include "inference/engines/simulated_engine.h"
#include "inference/inference_service.h"
#include "inference/io_threads.h"
#include "inference/metrics.h"
#include "inference/model_registry.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC listen address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9091",
          "Prometheus /metrics address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, engine, "simulated", "Default engine: simulated | openai");
ABSL_FLAG(int, sim_ttft_ms, 200, "Simulated engine: time to first token in milliseconds");
ABSL_FLAG(double, sim_tokens_per_second, 50,
          "Simulated engine: tokens per second (0: as fast as the reader takes them)");
ABSL_FLAG(int, sim_max_tokens, 512, "Simulated engine: most tokens per reply");
ABSL_FLAG(int, io_threads, 2, "Threads running engine timers and upstream sockets");
ABSL_FLAG(int, shutdown_grace_ms, 5000,
          "On SIGTERM, how long running streams may continue before they are cancelled");

namespace parley::inference {
namespace {

[[noreturn]] void Die(std::string_view message, const absl::Status& status) {
  common::LogError(message, {{"error", status.ToString()}});
  std::exit(1);
}

int Run() {
  const std::string engine = absl::GetFlag(FLAGS_engine);
  if (engine != "simulated") {
    Die("bad flag", absl::InvalidArgumentError(absl::StrCat("unknown --engine=", engine)));
  }
  absl::StatusOr<common::HostPort> listen = common::ParseHostPort(absl::GetFlag(FLAGS_listen));
  if (!listen.ok()) {
    Die("bad --listen", listen.status());
  }

  IoThreads io(absl::GetFlag(FLAGS_io_threads));
  ModelRegistry models;
  SimulatedEngine::Options simulated;
  simulated.time_to_first_token = absl::Milliseconds(absl::GetFlag(FLAGS_sim_ttft_ms));
  simulated.tokens_per_second = absl::GetFlag(FLAGS_sim_tokens_per_second);
  simulated.max_tokens = absl::GetFlag(FLAGS_sim_max_tokens);
  v1::Model simulated_model;
  simulated_model.set_name("simulated");
  simulated_model.set_engine("simulated");
  simulated_model.set_is_default(engine == "simulated");
  models.Add(simulated_model, std::make_shared<SimulatedEngine>(io.context(), simulated));

  auto registry = std::make_shared<prometheus::Registry>();
  InferenceMetrics metrics(*registry);
  InferenceService service(models, metrics);

  common::GrpcServerOptions options;
  options.listen = listen->ToString();
  options.services = {&service};
  options.metrics_registry = registry;
  options.metrics_service = "inference";
  absl::StatusOr<common::RunningGrpcServer> server = common::StartGrpcServer(options);
  if (!server.ok()) {
    Die("cannot start gRPC server", server.status());
  }
  absl::StatusOr<std::unique_ptr<common::MetricsEndpoint>> metrics_endpoint =
      common::MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_listen), registry);
  if (!metrics_endpoint.ok()) {
    Die("cannot serve metrics", metrics_endpoint.status());
  }
  absl::StatusOr<common::HostPort> metrics_listen =
      common::ParseHostPort(absl::GetFlag(FLAGS_metrics_listen));
  listen->port = static_cast<uint16_t>(server->port);
  metrics_listen->port = static_cast<uint16_t>((*metrics_endpoint)->port());
  common::LogInfo("listening",
                  {{"listen", listen->ToString()}, {"metrics_listen", metrics_listen->ToString()}});
  common::SetServing(*server->server, true);

  const int signal = common::WaitForShutdownSignal();
  common::LogInfo("shutting down", {{"signal", std::to_string(signal)}});
  common::SetServing(*server->server, false);
  // Streams still running after the grace period are cancelled, which stops their engines.
  server->server->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms)));
  server->server->Wait();
  common::LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace parley::inference

int main(int argc, char** argv) {
  parley::common::BlockShutdownSignals();
  parley::common::ParseFlags(argc, argv,
                             "parley-inference: streams model replies over gRPC.\n"
                             "  parley-inference --listen=HOST:PORT --metrics_listen=HOST:PORT "
                             "--engine=simulated|openai");
  parley::common::SetLogService("inference");
  return parley::inference::Run();
}
