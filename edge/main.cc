// parley-edge: WebSocket chat front, /metrics, /healthz, /readyz and the chat page on one port.
#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/shutdown_signal.h"
#include "edge/server/edge_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080",
          "HOST:PORT for WebSocket (/ws/chat), /metrics, /healthz, /readyz and the chat page; "
          "port 0 picks a free port");
ABSL_FLAG(std::string, inference, "127.0.0.1:50051", "HOST:PORT of parley-inference (gRPC)");
ABSL_FLAG(std::string, persistence, "127.0.0.1:50052", "HOST:PORT of parley-persistence (gRPC)");
ABSL_FLAG(int, threads, 0, "I/O threads; 0 means one per hardware thread");
ABSL_FLAG(int, history_messages, 20,
          "Most recent stored messages sent to inference with each new message");
ABSL_FLAG(bool, allow_anonymous, true,
          "Development mode: accept connections without a token; the user is the userId query "
          "parameter, or an anonymous id per connection");
ABSL_FLAG(int, drain_grace_ms, 10000,
          "On SIGTERM, how long running turns may finish before sockets close with 1001");

int main(int argc, char** argv) {
  parley::common::BlockShutdownSignals();
  parley::common::ParseFlags(argc, argv,
                             "parley-edge --listen=HOST:PORT --inference=HOST:PORT "
                             "--persistence=HOST:PORT");
  parley::common::SetLogService("edge");

  parley::edge::EdgeOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.inference = absl::GetFlag(FLAGS_inference);
  options.persistence = absl::GetFlag(FLAGS_persistence);
  options.threads = absl::GetFlag(FLAGS_threads);
  if (options.threads <= 0) {
    options.threads = std::max(1u, std::thread::hardware_concurrency());
  }
  options.history_messages = absl::GetFlag(FLAGS_history_messages);
  options.allow_anonymous = absl::GetFlag(FLAGS_allow_anonymous);
  options.drain_grace = absl::Milliseconds(absl::GetFlag(FLAGS_drain_grace_ms));
  if (options.history_messages < 1 || options.history_messages > 1000) {
    std::fprintf(stderr, "--history_messages must be between 1 and 1000\n");
    return 2;
  }

  absl::StatusOr<std::unique_ptr<parley::edge::EdgeServer>> server =
      parley::edge::EdgeServer::Start(options);
  if (!server.ok()) {
    parley::common::LogError("cannot start", {{"error", server.status().ToString()}});
    return 1;
  }
  const std::string& address = (*server)->address();
  parley::common::LogInfo("listening", {{"listen", address}, {"metrics_listen", address}});
  if (options.allow_anonymous) {
    parley::common::LogWarning(
        "development mode: connections are not authenticated; any client may name any userId");
  }

  const int signal = parley::common::WaitForShutdownSignal();
  parley::common::LogInfo("shutting down", {{"signal", std::to_string(signal)}});
  (*server)->Shutdown();
  parley::common::LogInfo("stopped");
  return 0;
}
