#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "edge/server/listener.h"
#include "edge/server/server_context.h"

namespace parley::edge {

struct EdgeOptions {
  std::string listen = "127.0.0.1:8080";
  std::string inference = "127.0.0.1:50051";
  std::string persistence = "127.0.0.1:50052";
  int threads = 1;
  int history_messages = 20;
  // Accept connections without a token (development only).
  bool allow_anonymous = false;
  // Token verification; built only when a secret or JWKS file is given.
  std::string jwt_secret_file;
  std::string jwks_file;
  std::string jwt_issuer;
  std::string jwt_audience;
  absl::Duration jwt_clock_skew = absl::Seconds(30);
  // Comma-separated browser origins allowed to open a WebSocket; empty allows all.
  std::string allowed_origins;
  ConnectionLimits limits;
  UserLimitsOptions user_limits;
  // `heartbeat` events while a reply waits for its first token; zero disables.
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // Caps the deadline a client gives a reply (`deadlineMs`, X-Parley-Deadline-Ms).
  absl::Duration max_deadline = absl::Minutes(5);
  // Follow-up suggestions (a second, short generation) after each reply on dialects that show
  // them.
  bool suggestions = true;
  // On shutdown, how long running turns may take to finish before sockets close.
  absl::Duration drain_grace = absl::Seconds(10);
  // How long a call to inference or persistence waits for the backend to be connected before it
  // fails; a backend that restarts within it is invisible to clients.
  absl::Duration backend_ready_timeout = absl::Seconds(5);
  // What one reply may hold of text persistence has not yet acknowledged durable; a full
  // reply stops pulling from inference until acknowledgements make room.
  MessageWriter::Window persistence_window;
  // A WebSocket echo endpoint at this path (conformance suites); empty serves none.
  std::string echo_path;
};

// The whole edge: one port for WebSocket and HTTP, one io_context run by
// `threads` threads, gRPC clients for both backends.
class EdgeServer {
 public:
  static absl::StatusOr<std::unique_ptr<EdgeServer>> Start(const EdgeOptions& options);

  ~EdgeServer();

  // Bound address, "HOST:PORT".
  const std::string& address() const { return address_; }

  // Drains and stops: readiness fails, no new connections or turns, running
  // turns get the grace period, then sockets close with 1001. Idempotent.
  void Shutdown();

 private:
  explicit EdgeServer(const EdgeOptions& options);

  EdgeOptions options_;
  ServerContext context_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::shared_ptr<Listener> listener_;
  std::vector<std::thread> threads_;
  std::string address_;
  bool stopped_ = false;
};

}  // namespace parley::edge
