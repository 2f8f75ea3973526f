#include "tools/parley-bench/workloads.h"

#include <cstdio>
#include <map>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/parley-bench/proc_stats.h"

namespace parley::bench {
namespace {

namespace json = boost::json;

std::map<std::string, ProcSample> Sample(const WatchedPids& pids) {
  std::map<std::string, ProcSample> samples;
  for (const auto& [name, pid] : pids) {
    absl::StatusOr<ProcSample> s = ReadProc(pid);
    if (s.ok()) {
      samples[name] = *s;
    }
  }
  if (absl::StatusOr<ProcSample> self = ReadProc(getpid()); self.ok()) {
    samples["bench_client"] = *self;
  }
  return samples;
}

// Per-process deltas between two samples, plus their sum over the servers.
json::object ProcessDeltas(const std::map<std::string, ProcSample>& before,
                           const std::map<std::string, ProcSample>& after) {
  json::object out;
  for (const auto& [name, a] : after) {
    auto it = before.find(name);
    if (it == before.end()) {
      continue;
    }
    const ProcSample& b = it->second;
    out[name] = json::object{{"cpu_seconds", a.cpu_seconds - b.cpu_seconds},
                             {"rss_before_kib", b.rss_kib},
                             {"rss_after_kib", a.rss_kib},
                             {"threads", a.threads},
                             {"open_files", a.open_files}};
  }
  return out;
}

double Num(const json::value* v) {
  if (v == nullptr) {
    return 0;
  }
  if (v->is_double()) {
    return v->get_double();
  }
  if (v->is_int64()) {
    return static_cast<double>(v->get_int64());
  }
  if (v->is_uint64()) {
    return static_cast<double>(v->get_uint64());
  }
  return 0;
}

double At(const json::object& o, std::initializer_list<const char*> path) {
  const json::object* cur = &o;
  const json::value* v = nullptr;
  for (const char* key : path) {
    if (cur == nullptr) {
      return 0;
    }
    v = cur->if_contains(key);
    if (v == nullptr) {
      return 0;
    }
    cur = v->if_object();
  }
  return Num(v);
}

json::object Config(const ClientOptions& o) {
  return json::object{{"target", absl::StrCat(o.host, ":", o.port)},
                      {"path", o.path},
                      {"connections", o.connections},
                      {"source_addresses", o.source_addresses},
                      {"threads", o.threads},
                      {"turns", o.turns},
                      {"duration_s", absl::ToDoubleSeconds(o.duration)},
                      {"ramp_s", absl::ToDoubleSeconds(o.ramp)}};
}

}  // namespace

absl::StatusOr<WatchedPids> ParsePids(const std::string& text) {
  WatchedPids pids;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    int pid = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &pid) || pid <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad pid entry '", item, "' (want name:pid)"));
    }
    pids.emplace_back(std::string(parts[0]), pid);
  }
  return pids;
}

json::object RunStream(const ClientOptions& options, const WatchedPids& pids) {
  LoadClient client(options);
  client.Connect();
  const auto before = Sample(pids);
  client.RunTurns();
  const auto after = Sample(pids);
  client.CloseAll(absl::Seconds(10));
  const ClientReport report = client.Report();

  json::object result = report.ToJson();
  result["workload"] = "stream";
  result["config"] = Config(options);
  json::object processes = ProcessDeltas(before, after);
  json::object per_1000;
  double servers_cpu = 0;
  for (const auto& [name, value] : processes) {
    const double cpu = Num(value.as_object().if_contains("cpu_seconds"));
    if (name != "bench_client") {
      servers_cpu += cpu;
    }
    if (report.tokens > 0) {
      per_1000[name] = cpu * 1000.0 / static_cast<double>(report.tokens);
    }
  }
  if (report.tokens > 0 && !pids.empty()) {
    per_1000["servers"] = servers_cpu * 1000.0 / static_cast<double>(report.tokens);
  }
  result["processes"] = std::move(processes);
  result["cpu_seconds_per_1000_tokens"] = std::move(per_1000);
  return result;
}

json::object RunSustain(ClientOptions options, const std::vector<int64_t>& steps,
                        absl::Duration max_stall, absl::Duration max_ttft_p99,
                        const WatchedPids& pids) {
  json::array results;
  int64_t last_passed = 0;
  std::string failure;
  int64_t failed_at = 0;
  for (int64_t c : steps) {
    options.connections = c;
    json::object r = RunStream(options, pids);
    const double lost = At(r, {"seq", "faulty_messages"});
    const double failed = At(r, {"turns", "failed"}) + At(r, {"connections", "connect_failures"}) +
                          At(r, {"connections", "disconnects"}) +
                          At(r, {"errors", "protocol_errors"});
    const double stall = At(r, {"itl_ms", "max"});
    const double ttft_p99 = At(r, {"ttft_ms", "p99"});
    std::string reason;
    if (lost > 0) {
      reason = "lost, repeated or reordered tokens";
    } else if (failed > 0) {
      reason = "failed turns or connections";
    } else if (stall > absl::ToDoubleMilliseconds(max_stall)) {
      reason = absl::StrFormat("a stream stalled %.0f ms", stall);
    } else if (ttft_p99 > absl::ToDoubleMilliseconds(max_ttft_p99)) {
      reason = absl::StrFormat("TTFT p99 %.0f ms", ttft_p99);
    }
    r["passed"] = reason.empty();
    if (!reason.empty()) {
      r["failure"] = reason;
    }
    std::fprintf(stderr, "sustain: C=%lld %s\n", static_cast<long long>(c),
                 reason.empty() ? "passed" : reason.c_str());
    results.push_back(std::move(r));
    if (!reason.empty()) {
      failure = reason;
      failed_at = c;
      break;
    }
    last_passed = c;
  }
  json::object out{{"workload", "sustain"},
                   {"steps", std::move(results)},
                   {"last_passed_concurrency", last_passed},
                   {"max_stall_ms", absl::ToDoubleMilliseconds(max_stall)},
                   {"max_ttft_p99_ms", absl::ToDoubleMilliseconds(max_ttft_p99)}};
  if (failed_at > 0) {
    out["failed_at_concurrency"] = failed_at;
    out["failure"] = failure;
  }
  return out;
}

json::object RunIdle(const ClientOptions& options, absl::Duration idle, const WatchedPids& pids) {
  const auto before_connect = Sample(pids);
  LoadClient client(options);
  const absl::Time connect_start = absl::Now();
  client.Connect();
  const double connect_s = absl::ToDoubleSeconds(absl::Now() - connect_start);
  const auto idle_start = Sample(pids);
  const absl::Time idle_start_time = absl::Now();
  absl::SleepFor(idle);
  const auto idle_end = Sample(pids);
  const double idle_s = absl::ToDoubleSeconds(absl::Now() - idle_start_time);
  const int64_t pongs = client.PingAll(absl::Seconds(30));
  client.CloseAll(absl::Seconds(30));
  const ClientReport report = client.Report();

  json::object processes;
  for (const auto& [name, end] : idle_end) {
    auto b = before_connect.find(name);
    auto s = idle_start.find(name);
    if (b == before_connect.end() || s == idle_start.end()) {
      continue;
    }
    const double established =
        static_cast<double>(std::max<int64_t>(1, report.connections_established));
    processes[name] = json::object{
        {"rss_before_kib", b->second.rss_kib},
        {"rss_connected_kib", end.rss_kib},
        {"rss_per_connection_kib",
         static_cast<double>(end.rss_kib - b->second.rss_kib) / established},
        {"idle_cpu_seconds", end.cpu_seconds - s->second.cpu_seconds},
        {"idle_cpu_percent", 100.0 * (end.cpu_seconds - s->second.cpu_seconds) / idle_s},
        {"connect_cpu_seconds", s->second.cpu_seconds - b->second.cpu_seconds},
        {"open_files", end.open_files},
        {"threads", end.threads}};
  }
  return json::object{
      {"workload", "idle"},
      {"config", Config(options)},
      {"connections",
       {{"attempted", report.connections_attempted},
        {"established", report.connections_established},
        {"connect_failures", report.connect_failures},
        {"disconnects", report.disconnects}}},
      {"connect_seconds", connect_s},
      {"idle_seconds", idle_s},
      {"pongs", pongs},
      {"processes", std::move(processes)},
  };
}

std::string FormatSummary(const json::object& r) {
  const json::value* workload = r.if_contains("workload");
  if (workload == nullptr || !workload->is_string()) {
    return "";
  }
  if (workload->get_string() == "sustain") {
    std::string out = absl::StrFormat("%8s %8s %10s %10s %10s %s\n", "clients", "tokens", "tok/s",
                                      "ttft_p99", "itl_max", "result");
    for (const json::value& step : r.at("steps").as_array()) {
      const json::object& s = step.as_object();
      absl::StrAppendFormat(
          &out, "%8.0f %8.0f %10.0f %10.2f %10.2f %s\n", At(s, {"config", "connections"}),
          At(s, {"tokens"}), At(s, {"tokens_per_second"}), At(s, {"ttft_ms", "p99"}),
          At(s, {"itl_ms", "max"}),
          s.contains("failure") ? std::string(s.at("failure").as_string()) : std::string("passed"));
    }
    absl::StrAppendFormat(&out, "last passed concurrency: %.0f\n",
                          At(r, {"last_passed_concurrency"}));
    return out;
  }
  if (workload->get_string() == "deadline") {
    std::string out =
        absl::StrFormat("deadline %.0f ms, %.0f runs per path\n", At(r, {"config", "deadline_ms"}),
                        At(r, {"config", "runs_per_path"}));
    absl::StrAppendFormat(&out, "%-8s %-34s %9s %9s %9s %9s\n", "path", "ms", "p50", "p99", "max",
                          "n");
    for (const auto& [name, p] : r.at("paths").as_object()) {
      const json::object& o = p.as_object();
      for (const char* measure : {"client_ms_after_deadline", "upstream_closed_ms_after_deadline",
                                  "upstream_closed_ms_after_client"}) {
        absl::StrAppendFormat(&out, "%-8s %-34s %9.3f %9.3f %9.3f %9.0f\n", std::string(name),
                              measure, At(o, {measure, "p50"}), At(o, {measure, "p99"}),
                              At(o, {measure, "max"}), At(o, {measure, "count"}));
      }
      absl::StrAppendFormat(
          &out, "%-8s deadline_exceeded %.0f, other errors %.0f, failed %.0f, upstream open %.0f\n",
          std::string(name), At(o, {"deadline_exceeded"}), At(o, {"other_errors"}),
          At(o, {"failed"}), At(o, {"upstream_still_open"}));
    }
    return out;
  }
  if (workload->get_string() == "idle") {
    std::string out = absl::StrFormat(
        "connections %.0f established, %.0f failed, %.0f answered ping; connect %.1f s\n",
        At(r, {"connections", "established"}), At(r, {"connections", "connect_failures"}),
        At(r, {"pongs"}), At(r, {"connect_seconds"}));
    absl::StrAppendFormat(&out, "%-14s %12s %12s %14s %12s\n", "process", "rss_before", "rss_after",
                          "KiB/connection", "idle_cpu_%");
    for (const auto& [name, p] : r.at("processes").as_object()) {
      const json::object& o = p.as_object();
      absl::StrAppendFormat(&out, "%-14s %12.0f %12.0f %14.2f %12.2f\n", std::string(name),
                            At(o, {"rss_before_kib"}), At(o, {"rss_connected_kib"}),
                            At(o, {"rss_per_connection_kib"}), At(o, {"idle_cpu_percent"}));
    }
    return out;
  }
  std::string out = absl::StrFormat(
      "clients %.0f (failed %.0f)  turns %.0f ok %.0f failed  tokens %.0f in %.2f s = %.0f tok/s\n",
      At(r, {"connections", "established"}), At(r, {"connections", "connect_failures"}),
      At(r, {"turns", "completed"}), At(r, {"turns", "failed"}), At(r, {"tokens"}),
      At(r, {"duration_s"}), At(r, {"tokens_per_second"}));
  absl::StrAppendFormat(&out, "seq: lost %.0f  repeated %.0f  out-of-order %.0f  errors %.0f\n",
                        At(r, {"seq", "lost"}), At(r, {"seq", "repeated"}),
                        At(r, {"seq", "out_of_order"}), At(r, {"errors", "error_frames"}));
  absl::StrAppendFormat(&out, "%-10s %9s %9s %9s %9s %9s %9s\n", "ms", "mean", "p50", "p90", "p99",
                        "p99.9", "max");
  for (const char* name : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"}) {
    absl::StrAppendFormat(&out, "%-10s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name,
                          At(r, {name, "mean"}), At(r, {name, "p50"}), At(r, {name, "p90"}),
                          At(r, {name, "p99"}), At(r, {name, "p999"}), At(r, {name, "max"}));
  }
  if (const json::value* per = r.if_contains("cpu_seconds_per_1000_tokens");
      per && per->is_object()) {
    out += "cpu s / 1000 tokens:";
    for (const auto& [name, v] : per->as_object()) {
      absl::StrAppendFormat(&out, "  %s %.4f", std::string(name), Num(&v));
    }
    out += "\n";
  }
  return out;
}

}  // namespace parley::bench
