#include "edge/server/edge_server.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/ip/address.hpp"
#include "common/grpc_metrics.h"
#include "common/host_port.h"
#include "common/log.h"
#include "edge/server/dialects.h"
#include "edge/server/http_session.h"
#include "grpc/grpc.h"
#include "grpcpp/support/channel_arguments.h"

namespace parley::edge {

namespace net = boost::asio;

namespace {

// Closing sockets and cancelling turns are quick; these bound a stuck peer.
constexpr absl::Duration kCancelGrace = absl::Seconds(5);
constexpr absl::Duration kCloseGrace = absl::Seconds(3);

}  // namespace

EdgeServer::EdgeServer(const EdgeOptions& options)
    : options_(options), io_(options.threads > 0 ? options.threads : 1) {}

absl::StatusOr<std::unique_ptr<EdgeServer>> EdgeServer::Start(const EdgeOptions& options) {
  absl::StatusOr<common::HostPort> listen = common::ParseHostPort(options.listen);
  if (!listen.ok()) {
    return listen.status();
  }
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(listen->host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen needs a numeric IP address, got \"", listen->host, "\""));
  }

  std::shared_ptr<const JwtVerifier> verifier;
  if (!options.jwt_secret_file.empty() || !options.jwks_file.empty()) {
    JwtVerifierOptions jwt;
    jwt.hs256_secret_file = options.jwt_secret_file;
    jwt.jwks_file = options.jwks_file;
    jwt.issuer = options.jwt_issuer;
    jwt.audience = options.jwt_audience;
    jwt.clock_skew = options.jwt_clock_skew;
    absl::StatusOr<std::unique_ptr<JwtVerifier>> created = JwtVerifier::Create(std::move(jwt));
    if (!created.ok()) {
      return created.status();
    }
    verifier = *std::move(created);
  }
  absl::StatusOr<OriginAllowList> origins = OriginAllowList::Parse(options.allowed_origins);
  if (!origins.ok()) {
    return origins.status();
  }

  std::unique_ptr<EdgeServer> server(new EdgeServer(options));
  ServerContext& context = server->context_;
  context.authenticator = std::make_unique<Authenticator>(verifier, options.allow_anonymous);
  context.origins = *std::move(origins);
  context.user_limits = std::make_unique<UserLimits>(options.user_limits);
  context.limits = options.limits;
  if (!options.echo_path.empty()) {
    context.echo_path = options.echo_path;
    context.echo = EchoDialect(context.echo_path);
  }
  // An Engine.IO polling payload is one HTTP body of packets that each must also fit a WebSocket
  // frame: the open packet announces, and the edge enforces, the smaller of the two bounds.
  context.limits.engine_io.max_payload =
      std::min(options.limits.max_frame_bytes, kMaxHttpRequestBodyBytes);
  // Channels connect lazily and reconnect by themselves; a backend that is
  // down at start only makes /readyz fail until it comes up.
  // Calls are counted as parley_edge_grpc_client_* and balanced over every
  // address a target resolves to (a headless Service's pods).
  // A reply whose client is not reading stops being read from its gRPC stream; this caps what
  // gRPC still buffers for it, so flow control reaches the engine (or the store) early.
  grpc::ChannelArguments stream_args;
  stream_args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  stream_args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                     static_cast<int>(options.limits.backend_stream_window_bytes));
  // A restarted backend is reconnected to within about a second (gRPC's default back-off grows
  // to two minutes), so calls waiting for it (--backend_ready_timeout_ms) find it soon.
  stream_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  stream_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A backend that hangs (stopped, or its host gone) keeps its TCP connection open; an
  // unanswered ping ends the connection, so its calls fail (and are retried elsewhere) instead of
  // waiting out their deadlines, which are minutes for a reply.
  stream_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  stream_args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  stream_args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  context.persistence = std::make_unique<PersistenceClient>(
      common::CreateInstrumentedChannel(options.persistence, context.metrics.shared_registry(),
                                        "edge", stream_args),
      absl::Seconds(10), options.backend_ready_timeout, options.persistence_window);
  // Names this process among every edge sharing the persistence service, so the signals it
  // publishes are not shown to its own viewers a second time.
  absl::BitGen bits;
  const std::string edge_id =
      absl::StrCat("edge-", absl::Hex(absl::Uniform<uint64_t>(bits), absl::kZeroPad16));
  context.room_links =
      std::make_unique<PersistenceRoomLinks>(*context.persistence, server->io_.get_executor(),
                                             context.rooms, context.metrics.registry(), edge_id);
  context.rooms.SetLinks(context.room_links.get(), edge_id);
  context.inference = std::make_unique<InferenceClient>(
      common::CreateInstrumentedChannel(options.inference, context.metrics.shared_registry(),
                                        "edge", stream_args),
      options.backend_ready_timeout);
  if (options.suggestions) {
    context.suggester =
        std::make_unique<InferenceSuggester>(*context.inference, context.metrics.registry());
  }
  // Every dialect's series exist from the start, at zero, so dashboards and rates see them.
  for (const Dialect& dialect : Dialects()) {
    context.metrics.Dialect(dialect.label);
  }
  context.turn_deps = TurnDeps{
      .persistence = context.persistence.get(),
      .inference = context.inference.get(),
      // Each connection's turns count in its own dialect's metrics instead.
      .metrics = &context.metrics.Dialect(Dialects().front().label),
      .tracker = &context.tracker,
      .rooms = &context.rooms,
      .history_messages = options.history_messages,
      .heartbeat_interval = options.heartbeat_interval,
  };
  context.turn_deps.max_client_deadline = options.max_deadline;

  absl::StatusOr<std::shared_ptr<Listener>> listener =
      Listener::Create(server->io_, net::ip::tcp::endpoint(address, listen->port), context);
  if (!listener.ok()) {
    return listener.status();
  }
  server->listener_ = *std::move(listener);
  server->address_ = common::HostPort{listen->host, server->listener_->port()}.ToString();

  server->work_.emplace(server->io_.get_executor());
  server->listener_->Run();
  const int threads = options.threads > 0 ? options.threads : 1;
  for (int i = 0; i < threads; ++i) {
    server->threads_.emplace_back([io = &server->io_] { io->run(); });
  }
  return server;
}

EdgeServer::~EdgeServer() { Shutdown(); }

void EdgeServer::Shutdown() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  context_.draining = true;
  // A server whose listener never opened (its address was taken) has nothing to stop.
  if (listener_ != nullptr) {
    listener_->Stop();
  }
  if (!context_.tracker.WaitUntilIdle(options_.drain_grace)) {
    common::LogWarning("turns still running after the drain grace period; cancelling them",
                       {{"turns", absl::StrCat(context_.tracker.running())}});
  }
  context_.http_connections.CloseAll();
  context_.connections.CloseAll();
  context_.tracker.CancelAll();
  if (!context_.tracker.WaitUntilIdle(kCancelGrace)) {
    common::LogError("turns did not stop after cancellation",
                     {{"turns", absl::StrCat(context_.tracker.running())}});
  }
  // A client that was still sending its upgrade request gets its answer, and then 1001 like
  // everybody else; its handshake timeout bounds the wait.
  context_.http_connections.WaitUntilEmpty(options_.limits.handshake_timeout);
  context_.connections.WaitUntilEmpty(kCloseGrace);
  // Rooms of sessions that outlive their sockets (Engine.IO) stop following persistence too.
  context_.rooms.CloseAll();
  work_.reset();
  io_.stop();
  for (std::thread& thread : threads_) {
    thread.join();
  }
}

}  // namespace parley::edge
