// parley-edge: WebSocket chat front, /metrics, /healthz, /readyz and the chat page on one port.
#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/release_mode.h"
#include "common/shutdown_signal.h"
#include "edge/server/dialects.h"
#include "edge/server/edge_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080",
          "HOST:PORT for WebSocket (/ws/chat), /metrics, /healthz, /readyz and the chat page; "
          "port 0 picks a free port");
ABSL_FLAG(std::string, inference, "127.0.0.1:50051", "HOST:PORT of parley-inference (gRPC)");
ABSL_FLAG(std::string, persistence, "127.0.0.1:50052", "HOST:PORT of parley-persistence (gRPC)");
ABSL_FLAG(int, threads, 0, "I/O threads; 0 means one per hardware thread");
ABSL_FLAG(int, history_messages, 20,
          "Most recent stored messages sent to inference with each new message");
ABSL_FLAG(bool, allow_anonymous, false,
          "Development mode: accept connections without a token; the user is the userId query "
          "parameter, or an anonymous id per connection. A token that is present is still "
          "verified");
ABSL_FLAG(std::string, jwt_secret_file, "",
          "File holding the HS256 shared secret (at least 32 bytes) that signs client tokens");
ABSL_FLAG(std::string, jwks_file, "",
          "JWKS file with the RS256/ES256 public keys that sign client tokens; reloaded when it "
          "changes");
ABSL_FLAG(std::string, jwt_issuer, "", "Required `iss` of client tokens; empty: not checked");
ABSL_FLAG(std::string, jwt_audience, "", "Required `aud` of client tokens; empty: not checked");
ABSL_FLAG(absl::Duration, jwt_clock_skew, absl::Seconds(30),
          "Clock difference allowed when checking a token's exp, nbf and iat (e.g. 30s)");
ABSL_FLAG(std::string, allowed_origins, "",
          "Comma-separated browser origins allowed to open a WebSocket (https://chat.example.com, "
          "https://*.example.com, *); empty allows every origin");
ABSL_FLAG(int, handshake_timeout_ms, 10000,
          "Time a client has to send its HTTP request and complete the WebSocket handshake");
ABSL_FLAG(int, idle_timeout_ms, 60000,
          "A WebSocket that receives nothing (not even a pong) for this long is closed; a ping "
          "goes out after half of it");
ABSL_FLAG(int, max_frame_bytes, 65536,
          "Largest client WebSocket message; a bigger one closes the connection with 1009");
ABSL_FLAG(int, max_connections, 10000,
          "Open client connections per process (WebSockets, and Socket.IO sessions on any "
          "transport); one more WebSocket is closed with 1013 (try again later), one more "
          "Socket.IO polling handshake answered 503");
ABSL_FLAG(int, connection_messages_per_minute, 30,
          "`message` frames per minute on one connection; 0 disables");
ABSL_FLAG(int, connection_message_burst, 10,
          "Messages one connection may send back to back after a quiet spell");
ABSL_FLAG(int, connection_typing_per_minute, 120,
          "`typing` frames per minute on one connection (after a burst of 10); <= 0 disables");
ABSL_FLAG(int, ai_chat_messages_per_minute, 100,
          "`chat` frames per minute on one /ws/ai-chat connection, in place of "
          "--connection_messages_per_minute there; the one past it closes the connection with "
          "1008; 0 disables");
ABSL_FLAG(bool, suggestions, true,
          "Follow-up suggestions after each reply, from a second, short generation, on the "
          "dialects that show them (/copilot)");
ABSL_FLAG(int, socketio_ping_interval_ms, 25000,
          "Socket.IO (Engine.IO): the edge pings each client this often");
ABSL_FLAG(int, socketio_ping_timeout_ms, 20000,
          "Socket.IO (Engine.IO): a client that has not answered a ping by then is disconnected");
ABSL_FLAG(int, user_messages_per_minute, 60,
          "`message` frames per minute per user over all of the user's connections; 0 disables");
ABSL_FLAG(int, user_message_burst, 20,
          "Messages one user may send back to back after a quiet spell");
ABSL_FLAG(int, heartbeat_interval_ms, 15000,
          "Interval of `heartbeat` events while a reply waits for its first token; 0 disables");
ABSL_FLAG(int, max_deadline_ms, 300000,
          "Caps the deadline a client may give a reply (deadlineMs, X-Parley-Deadline-Ms), in ms");
ABSL_FLAG(int, max_concurrent_turns, 4,
          "Replies generating at once per user on this process; 0 disables");
ABSL_FLAG(int, drain_grace_ms, 10000,
          "On SIGTERM, how long running turns may finish before sockets close with 1001");
ABSL_FLAG(int, outbound_high_water_frames, 64,
          "Frames queued for one client at which its replies stop pulling tokens from inference "
          "and reading its frames pauses");
ABSL_FLAG(int, outbound_low_water_frames, 16,
          "Above this many queued frames a reply's token deltas are merged into one stream_token; "
          "paused replies resume once the queue is back down to it");
ABSL_FLAG(int, outbound_high_water_bytes, 256 * 1024,
          "Bytes queued for one client at which its replies pause, as for "
          "--outbound_high_water_frames; they resume below a quarter of it");
ABSL_FLAG(int, max_outbound_bytes, 1024 * 1024,
          "A frame queued for a client that already has more than this many bytes waiting closes "
          "its connection with 1008");
ABSL_FLAG(int, backend_stream_window_bytes, 64 * 1024,
          "Bytes of one reply the edge's gRPC streams from inference and persistence buffer "
          "while the reply waits for a client that is not reading");
ABSL_FLAG(int, backend_ready_timeout_ms, 5000,
          "How long a call to inference or persistence waits for the backend to be connected "
          "(a restart) before the client is told it is unavailable");
ABSL_FLAG(int, persistence_max_unacked_deltas, 256,
          "Deltas of one reply the edge holds that persistence has not acknowledged durable; "
          "at this many the reply stops pulling tokens from inference until acknowledgements "
          "arrive");
ABSL_FLAG(int, persistence_max_unacked_bytes, 1024 * 1024,
          "Bytes of text of one reply the edge holds that persistence has not acknowledged "
          "durable, paused as for --persistence_max_unacked_deltas");
ABSL_FLAG(std::string, echo_path, "",
          "Serve a WebSocket echo endpoint at this path (e.g. /ws/echo) through the edge's own "
          "WebSocket code, for conformance suites such as Autobahn|Testsuite; authenticated like "
          "every path. Empty (the default) serves none");
ABSL_FLAG(int, slow_client_timeout_ms, 30000,
          "A client whose socket takes no data for this long while frames wait for it is closed "
          "with 1008; its replies still run to their end and are stored. 0 disables");

int main(int argc, char** argv) {
  parley::common::DisableMutexDeadlockDetection();
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
  options.jwt_secret_file = absl::GetFlag(FLAGS_jwt_secret_file);
  options.jwks_file = absl::GetFlag(FLAGS_jwks_file);
  options.jwt_issuer = absl::GetFlag(FLAGS_jwt_issuer);
  options.jwt_audience = absl::GetFlag(FLAGS_jwt_audience);
  options.jwt_clock_skew = absl::GetFlag(FLAGS_jwt_clock_skew);
  options.allowed_origins = absl::GetFlag(FLAGS_allowed_origins);
  options.echo_path = absl::GetFlag(FLAGS_echo_path);
  if (!options.echo_path.empty() &&
      (options.echo_path[0] != '/' || parley::edge::FindDialect(options.echo_path) != nullptr)) {
    std::fprintf(stderr, "--echo_path must start with / and be no other endpoint's path\n");
    return 2;
  }
  options.limits.handshake_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_handshake_timeout_ms));
  options.limits.idle_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_idle_timeout_ms));
  options.limits.max_frame_bytes =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_max_frame_bytes)));
  options.limits.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.limits.messages_per_minute = absl::GetFlag(FLAGS_connection_messages_per_minute);
  options.limits.message_burst = absl::GetFlag(FLAGS_connection_message_burst);
  options.limits.typing_per_minute = absl::GetFlag(FLAGS_connection_typing_per_minute);
  options.limits.ai_chat_messages_per_minute = absl::GetFlag(FLAGS_ai_chat_messages_per_minute);
  options.suggestions = absl::GetFlag(FLAGS_suggestions);
  options.limits.engine_io.ping_interval =
      absl::Milliseconds(std::max(1, absl::GetFlag(FLAGS_socketio_ping_interval_ms)));
  options.limits.engine_io.ping_timeout =
      absl::Milliseconds(std::max(1, absl::GetFlag(FLAGS_socketio_ping_timeout_ms)));
  options.user_limits.messages_per_minute = absl::GetFlag(FLAGS_user_messages_per_minute);
  options.user_limits.message_burst = absl::GetFlag(FLAGS_user_message_burst);
  options.user_limits.max_concurrent_turns = absl::GetFlag(FLAGS_max_concurrent_turns);
  options.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms));
  options.max_deadline = absl::Milliseconds(std::max(1, absl::GetFlag(FLAGS_max_deadline_ms)));
  options.limits.outbound.high_water_frames =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_outbound_high_water_frames)));
  options.limits.outbound.low_water_frames =
      static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_outbound_low_water_frames)));
  options.limits.outbound.high_water_bytes =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_outbound_high_water_bytes)));
  options.limits.outbound.max_bytes =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_max_outbound_bytes)));
  options.limits.backend_stream_window_bytes =
      static_cast<size_t>(std::max(1024, absl::GetFlag(FLAGS_backend_stream_window_bytes)));
  options.limits.slow_client_timeout =
      absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_slow_client_timeout_ms)));
  options.backend_ready_timeout =
      absl::Milliseconds(std::max(1, absl::GetFlag(FLAGS_backend_ready_timeout_ms)));
  options.persistence_window.max_unacked_deltas =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_persistence_max_unacked_deltas)));
  options.persistence_window.max_unacked_bytes =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_persistence_max_unacked_bytes)));
  if (!options.allow_anonymous && options.jwt_secret_file.empty() && options.jwks_file.empty()) {
    parley::common::LogError(
        "no way to authenticate clients: give --jwt_secret_file or --jwks_file, or "
        "--allow_anonymous for development");
    return 1;
  }
  if (options.limits.outbound.low_water_frames >= options.limits.outbound.high_water_frames ||
      options.limits.outbound.high_water_bytes > options.limits.outbound.max_bytes) {
    std::fprintf(stderr,
                 "need --outbound_low_water_frames < --outbound_high_water_frames and "
                 "--outbound_high_water_bytes <= --max_outbound_bytes\n");
    return 2;
  }
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
        "development mode: connections without a token are accepted; any client may name any "
        "userId");
  }
  if (options.allowed_origins.empty()) {
    parley::common::LogWarning("--allowed_origins is empty: every browser origin may connect");
  }

  const int signal = parley::common::WaitForShutdownSignal();
  parley::common::LogInfo("shutting down", {{"signal", std::to_string(signal)}});
  (*server)->Shutdown();
  parley::common::LogInfo("stopped");
  return 0;
}
