// parley-bench: load generator for Parley's WebSocket protocol, and (with
// --serve_direct) the in-process floor server the benchmarks compare against.
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/json.hpp"
#include "common/flags.h"
#include "common/host_port.h"
#include "common/log.h"
#include "common/shutdown_signal.h"
#include "tools/parley-bench/deadline_workload.h"
#include "tools/parley-bench/direct_server.h"
#include "tools/parley-bench/rooms.h"
#include "tools/parley-bench/upstream_server.h"
#include "tools/parley-bench/workloads.h"

ABSL_FLAG(bool, serve_direct, false,
          "Run the direct WebSocket server (same frames and token schedule as the edge, no "
          "backends) instead of generating load");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Direct server: listen address");
ABSL_FLAG(int64_t, direct_ttft_ms, 0, "Direct server: time to first token");
ABSL_FLAG(double, direct_tokens_per_second, 50, "Direct server: token pace; 0 = unpaced");
ABSL_FLAG(int64_t, direct_max_tokens, 64, "Direct server: tokens per reply");
ABSL_FLAG(std::string, inject, "none",
          "Direct server: fault to inject (none, drop_seq, repeat_seq, reorder_seq)");

ABSL_FLAG(bool, serve_upstream, false,
          "Run the OpenAI-compatible upstream stand-in (streams a few chunks, then holds each "
          "request open and records when its connection closes) instead of generating load");
ABSL_FLAG(int32_t, upstream_chunks, 3, "Upstream stand-in: content chunks before it holds");

ABSL_FLAG(std::string, target, "127.0.0.1:8080", "Server to load: HOST:PORT");
ABSL_FLAG(std::string, path, "/ws/chat", "WebSocket request path (may carry a query)");
ABSL_FLAG(std::string, workload, "stream", "stream | sustain | idle | deadline | rooms");
ABSL_FLAG(int64_t, connections, 1, "stream: concurrent clients; idle: connections to open");
ABSL_FLAG(int64_t, turns, 3,
          "stream/sustain: turns per client (when --duration_s is 0); deadline: turns per path");
ABSL_FLAG(double, duration_s, 0, "stream: keep starting turns for this long instead");
ABSL_FLAG(double, ramp_s, 1, "Spread the clients' first turns over this long");
ABSL_FLAG(double, turn_timeout_s, 30, "A reply not complete after this long fails its turn");
ABSL_FLAG(bool, same_conversation, true, "Later turns of a client continue its conversation");
ABSL_FLAG(std::string, content, "Tell me about streaming chat backends.", "User message text");
ABSL_FLAG(std::string, model, "", "Model to ask for; empty = server default");
ABSL_FLAG(int32_t, source_addresses, 1,
          "Spread connections over 127.0.0.1..127.0.0.N source addresses");
ABSL_FLAG(int32_t, threads, 2, "io_context threads (client or direct server)");
ABSL_FLAG(int32_t, connect_parallelism, 256, "Handshakes in flight while connecting");
ABSL_FLAG(std::string, concurrency_steps, "10,100,250,500,1000,2000,4000,8000",
          "sustain: client counts to try in order");
ABSL_FLAG(double, max_stall_ms, 1000, "sustain: a longer gap between tokens fails the step");
ABSL_FLAG(double, max_ttft_p99_ms, 1000, "sustain: a higher TTFT p99 fails the step");
ABSL_FLAG(double, idle_s, 10, "idle: how long connections stay idle");
ABSL_FLAG(std::string, upstream, "",
          "deadline: HOST:PORT of the parley-bench --serve_upstream behind parley-inference");
ABSL_FLAG(int64_t, deadline_ms, 250, "deadline: each turn's deadline");
ABSL_FLAG(std::string, deadline_paths, "native,openai,ai_sdk",
          "deadline: client paths to compare (native, openai, ai_sdk)");
ABSL_FLAG(std::string, viewer_target, "",
          "rooms: the edge the viewers connect to (HOST:PORT); --target takes the typing clients");
ABSL_FLAG(std::string, persistence, "127.0.0.1:50052",
          "rooms: gRPC target of parley-persistence, where each room's conversation is created");
ABSL_FLAG(std::string, rooms_steps, "100,1000", "rooms: rooms active at once, step by step");
ABSL_FLAG(double, rooms_duration_s, 20, "rooms: how long typing is measured at each step");
ABSL_FLAG(double, typing_interval_ms, 2000, "rooms: how often each room's client types");
ABSL_FLAG(int64_t, postgres_pid, 0,
          "rooms: the PostgreSQL server's pid; its process tree's CPU and backends are reported");
ABSL_FLAG(std::string, pids, "",
          "Processes to account CPU and memory for, as name:pid,... (e.g. edge:123)");
ABSL_FLAG(std::string, label, "", "Name of this run in the JSON output");
ABSL_FLAG(std::string, json_out, "", "Write the result as JSON to this file");

namespace {

namespace bench = parley::bench;
namespace common = parley::common;

// Runs `ioc` on --threads threads until SIGTERM or SIGINT, then calls `stop` and joins them.
int RunUntilSignal(boost::asio::io_context& ioc, const std::string& address,
                   const std::function<void()>& stop) {
  auto guard = boost::asio::make_work_guard(ioc);
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_threads)); ++i) {
    threads.emplace_back([&ioc] { ioc.run(); });
  }
  common::LogInfo("listening", {{"listen", address}, {"metrics_listen", address}});
  common::WaitForShutdownSignal();
  stop();
  guard.reset();
  ioc.stop();
  for (std::thread& t : threads) {
    t.join();
  }
  common::LogInfo("stopped");
  return 0;
}

int ServeDirect() {
  absl::StatusOr<bench::Inject> inject = bench::ParseInject(absl::GetFlag(FLAGS_inject));
  absl::StatusOr<common::HostPort> listen = common::ParseHostPort(absl::GetFlag(FLAGS_listen));
  if (!inject.ok() || !listen.ok()) {
    std::fprintf(
        stderr, "%s\n",
        std::string(!inject.ok() ? inject.status().message() : listen.status().message()).c_str());
    return 2;
  }
  common::SetLogService("bench-direct");
  boost::asio::io_context ioc;
  bench::DirectServer server(ioc,
                             {.ttft_ms = absl::GetFlag(FLAGS_direct_ttft_ms),
                              .tokens_per_second = absl::GetFlag(FLAGS_direct_tokens_per_second),
                              .max_tokens = absl::GetFlag(FLAGS_direct_max_tokens),
                              .inject = *inject});
  absl::StatusOr<uint16_t> port = server.Listen(listen->host, listen->port);
  if (!port.ok()) {
    std::fprintf(stderr, "%s\n", std::string(port.status().message()).c_str());
    return 1;
  }
  return RunUntilSignal(ioc, absl::StrCat(listen->host, ":", *port), [&server] { server.Stop(); });
}

int ServeUpstream() {
  absl::StatusOr<common::HostPort> listen = common::ParseHostPort(absl::GetFlag(FLAGS_listen));
  if (!listen.ok()) {
    std::fprintf(stderr, "%s\n", std::string(listen.status().message()).c_str());
    return 2;
  }
  common::SetLogService("bench-upstream");
  boost::asio::io_context ioc;
  bench::UpstreamServer server(ioc, absl::GetFlag(FLAGS_upstream_chunks));
  absl::StatusOr<uint16_t> port = server.Listen(listen->host, listen->port);
  if (!port.ok()) {
    std::fprintf(stderr, "%s\n", std::string(port.status().message()).c_str());
    return 1;
  }
  return RunUntilSignal(ioc, absl::StrCat(listen->host, ":", *port), [&server] { server.Stop(); });
}

absl::StatusOr<boost::json::object> RunDeadline(const common::HostPort& target) {
  absl::StatusOr<common::HostPort> upstream = common::ParseHostPort(absl::GetFlag(FLAGS_upstream));
  if (!upstream.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--upstream: ", upstream.status().message()));
  }
  absl::StatusOr<std::vector<bench::DeadlinePath>> paths =
      bench::ParseDeadlinePaths(absl::GetFlag(FLAGS_deadline_paths));
  if (!paths.ok()) {
    return paths.status();
  }
  return bench::RunDeadline({.host = target.host,
                             .port = target.port,
                             .upstream_host = upstream->host,
                             .upstream_port = upstream->port,
                             .paths = *paths,
                             .deadline_ms = absl::GetFlag(FLAGS_deadline_ms),
                             .runs = absl::GetFlag(FLAGS_turns),
                             .turn_timeout = absl::Seconds(absl::GetFlag(FLAGS_turn_timeout_s))});
}

int RunLoad() {
  absl::StatusOr<common::HostPort> target = common::ParseHostPort(absl::GetFlag(FLAGS_target));
  absl::StatusOr<bench::WatchedPids> pids = bench::ParsePids(absl::GetFlag(FLAGS_pids));
  if (!target.ok() || !pids.ok()) {
    std::fprintf(
        stderr, "%s\n",
        std::string(!target.ok() ? target.status().message() : pids.status().message()).c_str());
    return 2;
  }
  bench::ClientOptions options;
  options.host = target->host;
  options.port = target->port;
  options.path = absl::GetFlag(FLAGS_path);
  options.connections = absl::GetFlag(FLAGS_connections);
  options.turns = absl::GetFlag(FLAGS_turns);
  options.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  options.ramp = absl::Seconds(absl::GetFlag(FLAGS_ramp_s));
  options.turn_timeout = absl::Seconds(absl::GetFlag(FLAGS_turn_timeout_s));
  options.same_conversation = absl::GetFlag(FLAGS_same_conversation);
  options.content = absl::GetFlag(FLAGS_content);
  options.model = absl::GetFlag(FLAGS_model);
  options.source_addresses = absl::GetFlag(FLAGS_source_addresses);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.connect_parallelism = absl::GetFlag(FLAGS_connect_parallelism);

  const std::string workload = absl::GetFlag(FLAGS_workload);
  boost::json::object result;
  if (workload == "stream") {
    result = bench::RunStream(options, *pids);
  } else if (workload == "sustain") {
    std::vector<int64_t> steps;
    for (absl::string_view s :
         absl::StrSplit(absl::GetFlag(FLAGS_concurrency_steps), ',', absl::SkipEmpty())) {
      int64_t c = 0;
      if (!absl::SimpleAtoi(s, &c) || c <= 0) {
        std::fprintf(stderr, "bad --concurrency_steps entry\n");
        return 2;
      }
      steps.push_back(c);
    }
    result =
        bench::RunSustain(options, steps, absl::Milliseconds(absl::GetFlag(FLAGS_max_stall_ms)),
                          absl::Milliseconds(absl::GetFlag(FLAGS_max_ttft_p99_ms)), *pids);
  } else if (workload == "idle") {
    result = bench::RunIdle(options, absl::Seconds(absl::GetFlag(FLAGS_idle_s)), *pids);
  } else if (workload == "rooms") {
    absl::StatusOr<common::HostPort> viewer =
        common::ParseHostPort(absl::GetFlag(FLAGS_viewer_target));
    if (!viewer.ok()) {
      std::fprintf(stderr, "--viewer_target: %s\n", std::string(viewer.status().message()).c_str());
      return 2;
    }
    bench::RoomsOptions rooms;
    rooms.sender_host = target->host;
    rooms.sender_port = target->port;
    rooms.viewer_host = viewer->host;
    rooms.viewer_port = viewer->port;
    rooms.persistence = absl::GetFlag(FLAGS_persistence);
    rooms.steps.clear();
    for (absl::string_view s :
         absl::StrSplit(absl::GetFlag(FLAGS_rooms_steps), ',', absl::SkipEmpty())) {
      int64_t count = 0;
      if (!absl::SimpleAtoi(s, &count) || count <= 0) {
        std::fprintf(stderr, "bad --rooms_steps entry\n");
        return 2;
      }
      rooms.steps.push_back(count);
    }
    rooms.duration = absl::Seconds(absl::GetFlag(FLAGS_rooms_duration_s));
    rooms.interval = absl::Milliseconds(absl::GetFlag(FLAGS_typing_interval_ms));
    rooms.threads = options.threads;
    rooms.postgres_pid = static_cast<pid_t>(absl::GetFlag(FLAGS_postgres_pid));
    rooms.pids = *pids;
    result = bench::RunRooms(rooms);
  } else if (workload == "deadline") {
    absl::StatusOr<boost::json::object> deadline = RunDeadline(*target);
    if (!deadline.ok()) {
      std::fprintf(stderr, "%s\n", std::string(deadline.status().message()).c_str());
      return 2;
    }
    result = std::move(*deadline);
  } else {
    std::fprintf(stderr, "unknown --workload=%s (stream, sustain, idle, deadline, rooms)\n",
                 workload.c_str());
    return 2;
  }
  result["label"] = absl::GetFlag(FLAGS_label);
  if (workload != "rooms") {  // Prints its steps as it goes.
    std::fputs(bench::FormatSummary(result).c_str(), stdout);
  }
  const std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << boost::json::serialize(result) << "\n";
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", json_out.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  common::BlockShutdownSignals();
  common::ParseFlags(argc, argv,
                     "parley-bench: WebSocket load generator and direct floor server.\n"
                     "  parley-bench --target=127.0.0.1:PORT --workload=stream --connections=100\n"
                     "  parley-bench --serve_direct --listen=127.0.0.1:0\n"
                     "  parley-bench --serve_upstream --listen=127.0.0.1:0");
  if (absl::GetFlag(FLAGS_serve_upstream)) {
    return ServeUpstream();
  }
  return absl::GetFlag(FLAGS_serve_direct) ? ServeDirect() : RunLoad();
}
