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
#include "common/metrics_registry.h"
#include "common/release_mode.h"
#include "common/shutdown_signal.h"
#include "inference/engines/openai_engine.h"
#include "inference/engines/simulated_engine.h"
#include "inference/inference_service.h"
#include "inference/io_threads.h"
#include "inference/metrics.h"
#include "inference/model_registry.h"
#include "inference/models_config.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC listen address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9091",
          "Prometheus /metrics address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, engine, "simulated", "Default engine: simulated | openai");
ABSL_FLAG(int, sim_ttft_ms, 200, "Simulated engine: time to first token in milliseconds");
ABSL_FLAG(double, sim_tokens_per_second, 50,
          "Simulated engine: tokens per second (0: as fast as the reader takes them)");
ABSL_FLAG(int, sim_max_tokens, 512, "Simulated engine: most tokens per reply");
ABSL_FLAG(std::string, models_config, "",
          "JSON file routing public model names to engines (see docs/inference.md)");
ABSL_FLAG(std::string, upstream_url, "",
          "openai engine without --models_config: base URL, e.g. http://127.0.0.1:8000");
ABSL_FLAG(std::string, upstream_model, "",
          "openai engine: model name sent upstream (also the public name)");
ABSL_FLAG(std::string, upstream_api_key_file, "",
          "openai engine: file holding the API key (else PARLEY_UPSTREAM_API_KEY)");
ABSL_FLAG(std::string, upstream_ca_file, "",
          "PEM CA bundle trusted for https upstreams (default: the system's)");
ABSL_FLAG(int, upstream_connect_timeout_ms, 5000, "Upstream connect (and TLS) timeout");
ABSL_FLAG(int, upstream_max_silence_ms, 60000,
          "Longest upstream silence before the response head or between chunks");
ABSL_FLAG(int, upstream_max_retries, 2,
          "Retries of an upstream request that failed before its first reply byte");
ABSL_FLAG(int, upstream_retry_backoff_ms, 250, "First retry back-off; doubles per retry");
ABSL_FLAG(int, upstream_pool_size, 16, "Idle keep-alive connections kept per upstream");
ABSL_FLAG(int, io_threads, 2, "Threads running engine timers and upstream sockets");
ABSL_FLAG(int, max_connection_age_ms, 0,
          "Ask gRPC clients to reconnect after this long (running streams finish first), so "
          "load spreads onto newer replicas; 0 disables");
ABSL_FLAG(int, shutdown_grace_ms, 5000,
          "On SIGTERM, how long running streams may continue before they are cancelled");

namespace parley::inference {
namespace {

[[noreturn]] void Die(std::string_view message, const absl::Status& status) {
  common::LogError(message, {{"error", status.ToString()}});
  std::exit(1);
}

// The routing table: the config file, or the quick-start flags; the simulated
// engine is always available as model "simulated".
ModelsConfig ModelsFromFlags(const std::string& engine) {
  ModelsConfig config;
  if (const std::string path = absl::GetFlag(FLAGS_models_config); !path.empty()) {
    absl::StatusOr<ModelsConfig> loaded = LoadModelsConfigFile(path);
    if (!loaded.ok()) {
      Die("bad --models_config", loaded.status());
    }
    config = std::move(*loaded);
  } else if (engine == "openai") {
    ModelConfig model;
    model.engine = "openai";
    model.base_url = absl::GetFlag(FLAGS_upstream_url);
    if (model.base_url.empty()) {
      Die("bad flags", absl::InvalidArgumentError("--engine=openai needs --upstream_url"));
    }
    model.upstream_model = absl::GetFlag(FLAGS_upstream_model);
    model.name = model.upstream_model.empty() ? "openai" : model.upstream_model;
    model.api_key_file = absl::GetFlag(FLAGS_upstream_api_key_file);
    if (model.api_key_file.empty() && std::getenv("PARLEY_UPSTREAM_API_KEY") != nullptr) {
      model.api_key_env = "PARLEY_UPSTREAM_API_KEY";
    }
    config.default_model = model.name;
    config.models.push_back(std::move(model));
  }
  bool has_simulated = false;
  for (const ModelConfig& model : config.models) {
    has_simulated = has_simulated || model.name == "simulated";
  }
  if (!has_simulated) {
    ModelConfig simulated;
    simulated.name = "simulated";
    simulated.engine = "simulated";
    config.models.push_back(std::move(simulated));
  }
  if (config.default_model.empty() && engine == "simulated" && !has_simulated) {
    config.default_model = "simulated";
  }
  return config;
}

int Run() {
  const std::string engine = absl::GetFlag(FLAGS_engine);
  if (engine != "simulated" && engine != "openai") {
    Die("bad flag", absl::InvalidArgumentError(absl::StrCat("unknown --engine=", engine)));
  }
  absl::StatusOr<common::HostPort> listen = common::ParseHostPort(absl::GetFlag(FLAGS_listen));
  if (!listen.ok()) {
    Die("bad --listen", listen.status());
  }

  auto registry = std::make_shared<parley::common::MetricsRegistry>();
  InferenceMetrics metrics(*registry);
  IoThreads io(absl::GetFlag(FLAGS_io_threads));
  EngineDeps deps;
  deps.io = &io.context();
  deps.metrics = &metrics;
  deps.simulated.time_to_first_token = absl::Milliseconds(absl::GetFlag(FLAGS_sim_ttft_ms));
  deps.simulated.tokens_per_second = absl::GetFlag(FLAGS_sim_tokens_per_second);
  deps.simulated.max_tokens = absl::GetFlag(FLAGS_sim_max_tokens);
  deps.openai.connect_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_upstream_connect_timeout_ms));
  deps.openai.max_silence = absl::Milliseconds(absl::GetFlag(FLAGS_upstream_max_silence_ms));
  deps.openai.max_retries = absl::GetFlag(FLAGS_upstream_max_retries);
  deps.openai.retry_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_upstream_retry_backoff_ms));
  absl::StatusOr<std::shared_ptr<UpstreamTransport>> transport =
      UpstreamTransport::Create(io.context(), {.ca_file = absl::GetFlag(FLAGS_upstream_ca_file),
                                               .max_idle_per_origin = static_cast<size_t>(std::max(
                                                   0, absl::GetFlag(FLAGS_upstream_pool_size)))});
  if (!transport.ok()) {
    Die("bad --upstream_ca_file", transport.status());
  }
  deps.transport = *transport;
  ModelRegistry models;
  if (absl::Status status = AddConfiguredModels(ModelsFromFlags(engine), deps, models);
      !status.ok()) {
    Die("bad model configuration", status);
  }
  InferenceService service(models, metrics);

  common::GrpcServerOptions options;
  options.listen = listen->ToString();
  options.services = {&service};
  options.metrics_registry = registry;
  options.metrics_service = "inference";
  options.max_connection_age_ms = absl::GetFlag(FLAGS_max_connection_age_ms);
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
  // Serving before the listening line, which callers wait for before their first call.
  common::SetServing(*server->server, true);
  common::LogInfo("listening",
                  {{"listen", listen->ToString()}, {"metrics_listen", metrics_listen->ToString()}});
  // The listening line comes first (scripts wait for it); the routing table follows.
  for (const v1::Model& model : models.List()) {
    common::LogInfo("model", {{"name", model.name()},
                              {"engine", model.engine()},
                              {"upstream_model", model.upstream_model()},
                              {"default", model.is_default() ? "true" : "false"}});
  }

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
  parley::common::DisableMutexDeadlockDetection();
  parley::common::BlockShutdownSignals();
  parley::common::ParseFlags(argc, argv,
                             "parley-inference: streams model replies over gRPC.\n"
                             "  parley-inference --listen=HOST:PORT --metrics_listen=HOST:PORT "
                             "--engine=simulated|openai");
  parley::common::SetLogService("inference");
  return parley::inference::Run();
}
