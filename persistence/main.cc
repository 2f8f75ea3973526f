// parley-persistence: conversations, messages and the durable stream log.

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/grpc_server.h"
#include "common/host_port.h"
#include "common/log.h"
#include "common/metrics_endpoint.h"
#include "common/metrics_registry.h"
#include "common/release_mode.h"
#include "common/shutdown_signal.h"
#include "persistence/conversation_service.h"
#include "persistence/store_factory.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50052", "gRPC listen address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9092",
          "Prometheus /metrics listen address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, store, "sqlite:data/parley.db",
          "sqlite:PATH or postgresql://USER@HOST:PORT/DB");
ABSL_FLAG(std::string, store_password_file, "",
          "File holding the PostgreSQL password (else PARLEY_STORE_PASSWORD)");
// Most of these threads wait, not work: a store call blocks for its commit, and SQLite's group
// commit can only join the writes whose threads are waiting, so the count bounds the batch.
ABSL_FLAG(int, store_threads, 64, "Threads running blocking store calls");
ABSL_FLAG(int, store_queue_limit, 1024,
          "Calls that may wait for a store thread; one more is answered RESOURCE_EXHAUSTED "
          "(the edge tells its client storage_unavailable); 0: no bound");
ABSL_FLAG(int, store_pool_size, 8, "Most PostgreSQL connections open at once");
ABSL_FLAG(int, stream_lease_ms, 5000,
          "A streaming reply whose writer stopped renewing its lease this long ago (its edge "
          "died) is ended as interrupted with finish reason lease_expired; 0: never");
ABSL_FLAG(int, signal_max_age_ms, 3000,
          "A typing signal older than this when it would reach a watcher is dropped");
ABSL_FLAG(int, max_connection_age_ms, 0,
          "Ask gRPC clients to reconnect after this long (running streams finish first), so "
          "load spreads onto newer replicas; 0 disables");

namespace {

int Fail(const std::string& message) {
  parley::common::LogError("cannot start", {{"error", message}});
  return 1;
}

// The password never travels on the command line, where `ps` shows it.
absl::StatusOr<std::string> StorePassword() {
  const std::string file = absl::GetFlag(FLAGS_store_password_file);
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read --store_password_file ", file));
    }
    std::stringstream contents;
    contents << in.rdbuf();
    return std::string(absl::StripTrailingAsciiWhitespace(contents.str()));
  }
  const char* password = std::getenv("PARLEY_STORE_PASSWORD");
  return std::string(password != nullptr ? password : "");
}

// The configured host with the port actually bound (port 0 picks one).
std::string BoundAddress(const std::string& configured, int port) {
  absl::StatusOr<parley::common::HostPort> address = parley::common::ParseHostPort(configured);
  parley::common::HostPort bound{address.ok() ? address->host : "127.0.0.1",
                                 static_cast<uint16_t>(port)};
  return bound.ToString();
}

}  // namespace

int main(int argc, char** argv) {
  parley::common::DisableMutexDeadlockDetection();
  parley::common::BlockShutdownSignals();
  parley::common::SetLogService("persistence");
  parley::common::ParseFlags(argc, argv,
                             "parley-persistence --listen=HOST:PORT --metrics_listen=HOST:PORT "
                             "--store=sqlite:PATH|postgresql://USER@HOST:PORT/DB");

  absl::StatusOr<std::string> password = StorePassword();
  if (!password.ok()) {
    return Fail(password.status().ToString());
  }
  absl::StatusOr<std::unique_ptr<parley::persistence::Store>> store =
      parley::persistence::OpenStore(absl::GetFlag(FLAGS_store), *password,
                                     absl::GetFlag(FLAGS_store_pool_size));
  if (!store.ok()) {
    return Fail(store.status().ToString());
  }
  auto registry = std::make_shared<parley::common::MetricsRegistry>();
  parley::persistence::ConversationService::Options options;
  options.store_threads = absl::GetFlag(FLAGS_store_threads);
  options.store_queue_limit =
      static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_store_queue_limit)));
  options.stream_lease = absl::Milliseconds(absl::GetFlag(FLAGS_stream_lease_ms));
  options.signal_max_age = absl::Milliseconds(absl::GetFlag(FLAGS_signal_max_age_ms));
  auto service =
      std::make_unique<parley::persistence::ConversationService>(**store, registry, options);

  absl::StatusOr<std::unique_ptr<parley::common::MetricsEndpoint>> metrics =
      parley::common::MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_listen), registry);
  if (!metrics.ok()) {
    return Fail(metrics.status().ToString());
  }
  parley::common::GrpcServerOptions server_options;
  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.services = {service.get()};
  server_options.metrics_registry = registry;
  server_options.metrics_service = "persistence";
  server_options.max_connection_age_ms = absl::GetFlag(FLAGS_max_connection_age_ms);
  absl::StatusOr<parley::common::RunningGrpcServer> server =
      parley::common::StartGrpcServer(server_options);
  if (!server.ok()) {
    return Fail(server.status().ToString());
  }
  parley::common::SetServing(*server->server, true);
  const std::string listen = BoundAddress(server_options.listen, server->port);
  const std::string metrics_listen =
      BoundAddress(absl::GetFlag(FLAGS_metrics_listen), (*metrics)->port());
  const std::string store_kind((*store)->kind());
  parley::common::LogInfo(
      "listening", {{"listen", listen}, {"metrics_listen", metrics_listen}, {"store", store_kind}});

  const int signal = parley::common::WaitForShutdownSignal();
  parley::common::LogInfo("shutting down", {{"signal", std::to_string(signal)}});
  parley::common::SetServing(*server->server, false);
  // Running calls end (streams are cancelled, acknowledged deltas are already
  // durable); then the committer drains and the store closes.
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->server->Wait();
  service.reset();
  store->reset();
  parley::common::LogInfo("stopped");
  return 0;
}
