// parley_soak: the three services from the build under a mixed load for a while, with what each
// holds sampled every second. Run by scripts/soak, which plots the samples.
//
// The load: workers cycle through every way in — the native protocol (a whole reply, a cancel
// after the first token, a reconnect and resume mid-reply, a slow reader), the copilot, ai_chat
// and agent dialects (the agent over WebSocket and over its event stream), Socket.IO, the OpenAI
// API and the AI SDK's chat API. Every turn must end the way the protocol says; a turn that does
// not is counted as a failure.
//
// The verdict (exit status 0 only if all hold):
//   - no turn failed, and every service was there at every sample;
//   - every line is flat: after a warm-up (the first 20% of the run, at least 60 s), the mean of
//     the last quarter of the samples exceeds the mean of the first quarter by at most 10%, plus
//     4 MiB for resident memory, and plus 8 for open files and for threads. Connections come and
//     go with the load, which the means of a quarter smooth out; a leak grows through them.

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "tests/support/parley_stack.h"
#include "tests/support/sse_client.h"
#include "tests/support/ws_client.h"

ABSL_FLAG(double, minutes, 10, "How long the load runs");
ABSL_FLAG(int, workers, 6, "Clients running turns at the same time");
ABSL_FLAG(std::string, samples, "soak.tsv", "Where the per-second samples are written (TSV)");
ABSL_FLAG(std::string, summary, "soak-summary.txt", "Where the verdict is written");

namespace parley::soak {
namespace {

namespace json = boost::json;
using ::parley::testing::HttpRequest;
using ::parley::testing::HttpResponse;
using ::parley::testing::SseClient;
using ::parley::testing::SseEvent;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

constexpr absl::Duration kTurnTimeout = absl::Seconds(30);

absl::Status Fail(absl::string_view scenario, absl::string_view what) {
  return absl::InternalError(absl::StrCat(scenario, ": ", what));
}

// Reads native frames until one of `types`, returning it; every stream_token's seq goes to
// `last_seq`.
absl::StatusOr<json::object> ReadNativeUntil(WsClient& client,
                                             const std::vector<std::string>& types,
                                             int64_t* last_seq = nullptr,
                                             absl::Duration pause = absl::ZeroDuration()) {
  for (;;) {
    absl::StatusOr<json::object> frame = client.ReadJson(kTurnTimeout);
    if (!frame.ok()) {
      return frame.status();
    }
    const std::string type = Str(*frame, "type");
    if (type == "error") {
      return absl::InternalError(json::serialize(*frame));
    }
    if (type == "stream_token" && last_seq != nullptr) {
      *last_seq = frame->at("seq").as_int64();
    }
    for (const std::string& wanted : types) {
      if (type == wanted) {
        return frame;
      }
    }
    if (pause > absl::ZeroDuration()) {
      absl::SleepFor(pause);  // A slow reader: the edge's outbound queue holds what it sent.
    }
  }
}

absl::StatusOr<std::unique_ptr<WsClient>> Native(const std::string& edge, const std::string& user) {
  return WsClient::Connect(edge, absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
}

json::object NativeMessage(const std::string& id, const std::string& text) {
  return {{"type", "message"}, {"id", id}, {"content", text}};
}

absl::Status NativeTurn(const std::string& edge, const std::string& user, int64_t n,
                        absl::Duration pause) {
  absl::StatusOr<std::unique_ptr<WsClient>> client = Native(edge, user);
  if (!client.ok()) {
    return client.status();
  }
  if (absl::Status sent = (*client)->SendJson(NativeMessage(absl::StrCat("m", n), "Tell me more"));
      !sent.ok()) {
    return sent;
  }
  absl::StatusOr<json::object> end = ReadNativeUntil(**client, {"stream_complete"}, nullptr, pause);
  if (!end.ok()) {
    return end.status();
  }
  return (*client)->Close();
}

absl::Status NativeCancel(const std::string& edge, const std::string& user, int64_t n) {
  absl::StatusOr<std::unique_ptr<WsClient>> client = Native(edge, user);
  if (!client.ok()) {
    return client.status();
  }
  if (absl::Status sent = (*client)->SendJson(NativeMessage(absl::StrCat("c", n), "Go on"));
      !sent.ok()) {
    return sent;
  }
  absl::StatusOr<json::object> first =
      ReadNativeUntil(**client, {"stream_token", "stream_complete"});
  if (!first.ok()) {
    return first.status();
  }
  if (Str(*first, "type") == "stream_complete") {
    return (*client)->Close();  // Over before the cancel could be sent: nothing to stop.
  }
  const std::string message_id = Str(*first, "messageId");
  if (absl::Status sent = (*client)->SendJson({{"type", "cancel"}, {"messageId", message_id}});
      !sent.ok()) {
    return sent;
  }
  absl::StatusOr<json::object> end =
      ReadNativeUntil(**client, {"stream_cancelled", "stream_complete"});
  if (!end.ok()) {
    return end.status();
  }
  return (*client)->Close();
}

absl::Status NativeResume(const std::string& edge, const std::string& user, int64_t n) {
  std::string message_id;
  int64_t last_seq = 0;
  {
    absl::StatusOr<std::unique_ptr<WsClient>> client = Native(edge, user);
    if (!client.ok()) {
      return client.status();
    }
    if (absl::Status sent = (*client)->SendJson(NativeMessage(absl::StrCat("r", n), "Keep going"));
        !sent.ok()) {
      return sent;
    }
    absl::StatusOr<json::object> first =
        ReadNativeUntil(**client, {"stream_token", "stream_complete"}, &last_seq);
    if (!first.ok()) {
      return first.status();
    }
    message_id = Str(*first, "messageId");
    // The socket goes away mid-reply without a close handshake, as a dropped network would.
  }
  absl::StatusOr<std::unique_ptr<WsClient>> again = Native(edge, user);
  if (!again.ok()) {
    return again.status();
  }
  if (absl::Status sent = (*again)->SendJson(
          {{"type", "resume"}, {"messageId", message_id}, {"lastSeq", last_seq}});
      !sent.ok()) {
    return sent;
  }
  absl::StatusOr<json::object> end = ReadNativeUntil(
      **again, {"stream_complete", "stream_cancelled", "stream_interrupted", "resumed"});
  if (!end.ok()) {
    return end.status();
  }
  if (Str(*end, "type") == "resumed") {
    if (!end->at("recovered").as_bool()) {
      return Fail("resume", json::serialize(*end));
    }
    end = ReadNativeUntil(**again, {"stream_complete", "stream_cancelled", "stream_interrupted"});
    if (!end.ok()) {
      return end.status();
    }
  }
  if (Str(*end, "type") != "stream_complete") {
    return Fail("resume", json::serialize(*end));
  }
  return (*again)->Close();
}

absl::Status Copilot(const std::string& edge, const std::string& user) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge, absl::StrCat("/copilot?userId=", user, "&token=null"));
  if (!client.ok()) {
    return client.status();
  }
  if (absl::Status sent = (*client)->SendJson(
          {{"action", "message"}, {"message", "Add a supplier"}, {"streaming", true}});
      !sent.ok()) {
    return sent;
  }
  for (;;) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson(kTurnTimeout);
    if (!frame.ok()) {
      return frame.status();
    }
    const std::string type = Str(*frame, "type");
    if (type == "error" || type == "stream_interrupted") {
      return Fail("copilot", json::serialize(*frame));
    }
    if (type == "stream_complete") {
      return (*client)->Close();
    }
  }
}

absl::Status AiChat(const std::string& edge, const std::string& user) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge, absl::StrCat("/ws/ai-chat?userId=", user));
  if (!client.ok()) {
    return client.status();
  }
  if (absl::Status sent =
          (*client)->SendJson({{"type", "chat"}, {"message", "Weather?"}, {"model", "gpt-4o"}});
      !sent.ok()) {
    return sent;
  }
  for (;;) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson(kTurnTimeout);
    if (!frame.ok()) {
      return frame.status();
    }
    const std::string type = Str(*frame, "type");
    if (type == "error") {
      return Fail("ai_chat", json::serialize(*frame));
    }
    if (type == "done") {
      return (*client)->Close();
    }
  }
}

constexpr char kAgentQuery[] = "question=Show+top+incidents&dataset=incidents&userId=";

absl::Status AgentWebSocket(const std::string& edge, const std::string& user) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge, absl::StrCat("/ws/agent/stream?", kAgentQuery, user));
  if (!client.ok()) {
    return client.status();
  }
  bool completed = false;
  for (;;) {
    absl::StatusOr<json::object> event = (*client)->ReadJson(kTurnTimeout);
    if (!event.ok()) {
      // The edge closes the socket after stream_end.
      return completed ? absl::OkStatus() : event.status();
    }
    const std::string type = Str(*event, "type");
    if (type == "error") {
      return Fail("agent", json::serialize(*event));
    }
    completed = completed || type == "stream_end";
  }
}

absl::Status AgentEventStream(const std::string& edge, const std::string& user) {
  absl::StatusOr<std::unique_ptr<SseClient>> client =
      SseClient::Open(edge, absl::StrCat("/agent/stream?", kAgentQuery, user));
  if (!client.ok()) {
    return client.status();
  }
  for (;;) {
    absl::StatusOr<SseEvent> event = (*client)->Next(kTurnTimeout);
    if (!event.ok()) {
      return event.status();
    }
    boost::system::error_code ec;
    json::value value = json::parse(event->data, ec);
    if (ec || !value.is_object()) {
      continue;
    }
    const std::string type = Str(value.as_object(), "type");
    if (type == "error") {
      return Fail("agent_sse", event->data);
    }
    if (type == "stream_end") {
      return absl::OkStatus();
    }
  }
}

absl::Status SocketIo(const std::string& edge, const std::string& user) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge, absl::StrCat("/socket.io/?EIO=4&transport=websocket&userId=", user));
  if (!client.ok()) {
    return client.status();
  }
  absl::StatusOr<std::string> open = (*client)->Read(kTurnTimeout);
  if (!open.ok()) {
    return open.status();
  }
  if (open->empty() || (*open)[0] != '0') {
    return Fail("socketio", *open);
  }
  if (absl::Status sent = (*client)->Send("40/chat,"); !sent.ok()) {
    return sent;
  }
  bool sent_message = false;
  for (;;) {
    absl::StatusOr<std::string> frame = (*client)->Read(kTurnTimeout);
    if (!frame.ok()) {
      return frame.status();
    }
    if (*frame == "2") {  // The server's ping.
      if (absl::Status pong = (*client)->Send("3"); !pong.ok()) {
        return pong;
      }
      continue;
    }
    if (absl::StartsWith(*frame, "40/chat,") && !sent_message) {
      sent_message = true;
      if (absl::Status sent =
              (*client)->Send(R"(42/chat,["chat:send",{"content":"Hello!","role":"user"}])");
          !sent.ok()) {
        return sent;
      }
      continue;
    }
    if (absl::StartsWith(*frame, "44/chat,") || absl::StrContains(*frame, "\"chat:error\"")) {
      return Fail("socketio", *frame);
    }
    if (absl::StrContains(*frame, "\"chat:complete\"")) {
      return (*client)->Close();
    }
  }
}

absl::Status OpenAiCompletion(const std::string& edge, const std::string& user) {
  const std::string body =
      R"({"model":"sim","messages":[{"role":"user","content":"Say hello"}],"stream":false})";
  absl::StatusOr<HttpResponse> response =
      HttpRequest(edge, "POST", absl::StrCat("/v1/chat/completions?userId=", user), body,
                  {{"Content-Type", "application/json"}}, kTurnTimeout);
  if (!response.ok()) {
    return response.status();
  }
  if (response->status != 200) {
    return Fail("openai", absl::StrCat(response->status, " ", response->body));
  }
  return absl::OkStatus();
}

absl::Status AiSdkChat(const std::string& edge, const std::string& user, int64_t n) {
  const std::string body = absl::StrCat(
      R"({"id":"soak-)", user, "-", n,
      R"(","trigger":"submit-message","messages":[{"id":"u1","role":"user","parts":[{"type":"text","text":"Hi"}]}]})");
  absl::StatusOr<HttpResponse> response =
      HttpRequest(edge, "POST", absl::StrCat("/api/chat?userId=", user), body,
                  {{"Content-Type", "application/json"}}, kTurnTimeout);
  if (!response.ok()) {
    return response.status();
  }
  if (response->status != 200 || !absl::StrContains(response->body, "\"type\":\"finish\"")) {
    return Fail("ai_sdk", absl::StrCat(response->status, " ", response->body));
  }
  return absl::OkStatus();
}

struct Scenario {
  const char* name;
  std::function<absl::Status(const std::string& edge, const std::string& user, int64_t n)> run;
};

const std::vector<Scenario>& Scenarios() {
  static const std::vector<Scenario> scenarios = {
      {"native",
       [](auto& e, auto& u, int64_t n) { return NativeTurn(e, u, n, absl::ZeroDuration()); }},
      {"native_cancel", [](auto& e, auto& u, int64_t n) { return NativeCancel(e, u, n); }},
      {"native_resume", [](auto& e, auto& u, int64_t n) { return NativeResume(e, u, n); }},
      {"native_slow_reader",
       [](auto& e, auto& u, int64_t n) { return NativeTurn(e, u, n, absl::Milliseconds(20)); }},
      {"copilot", [](auto& e, auto& u, int64_t) { return Copilot(e, u); }},
      {"ai_chat", [](auto& e, auto& u, int64_t) { return AiChat(e, u); }},
      {"agent", [](auto& e, auto& u, int64_t) { return AgentWebSocket(e, u); }},
      {"agent_sse", [](auto& e, auto& u, int64_t) { return AgentEventStream(e, u); }},
      {"socketio", [](auto& e, auto& u, int64_t) { return SocketIo(e, u); }},
      {"openai", [](auto& e, auto& u, int64_t) { return OpenAiCompletion(e, u); }},
      {"ai_sdk", [](auto& e, auto& u, int64_t n) { return AiSdkChat(e, u, n); }},
  };
  return scenarios;
}

// What /proc says a process holds right now.
struct Usage {
  bool alive = false;  // /proc had the process.
  double rss_mib = 0;
  int64_t open_files = 0;
  int64_t threads = 0;
};

Usage Sample(pid_t pid) {
  Usage usage;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  usage.alive = status.good();
  std::string line;
  while (std::getline(status, line)) {
    int64_t value = 0;
    // "VmRSS:\t  51234 kB"
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipWhitespace());
    if (fields.size() < 2 || !absl::SimpleAtoi(fields[1], &value)) {
      continue;
    }
    if (fields[0] == "VmRSS:") {
      usage.rss_mib = static_cast<double>(value) / 1024;
    } else if (fields[0] == "Threads:") {
      usage.threads = value;
    }
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++usage.open_files;
  }
  return usage;
}

struct Series {
  std::string name;  // "edge rss_mib"
  double slack = 0;  // What a line may rise by beyond 10%.
  std::vector<double> values;
};

double Mean(const std::vector<double>& values, size_t begin, size_t end) {
  double sum = 0;
  for (size_t i = begin; i < end; ++i) {
    sum += values[i];
  }
  return end > begin ? sum / static_cast<double>(end - begin) : 0;
}

int Run() {
  const absl::Duration run_time = absl::Seconds(absl::GetFlag(FLAGS_minutes) * 60);
  std::unique_ptr<testing::ParleyStack> stack = testing::ParleyStack::Start({
      .inference_flags = {"--sim_ttft_ms=50", "--sim_tokens_per_second=200", "--sim_max_tokens=48"},
      // The soak's few users send far more than a person would; the limits are not under test.
      .edge_flags = {"--user_messages_per_minute=1000000", "--user_message_burst=100000",
                     "--connection_messages_per_minute=1000000",
                     "--connection_message_burst=100000", "--ai_chat_messages_per_minute=1000000",
                     "--max_concurrent_turns=64"},
  });
  const std::string edge = stack->edge_address();
  const std::vector<std::pair<std::string, pid_t>> services = {
      {"edge", stack->edge().pid()},
      {"inference", stack->inference().pid()},
      {"persistence", stack->persistence().pid()},
  };

  absl::Mutex mu;
  std::map<std::string, int64_t> turns ABSL_GUARDED_BY(mu);
  std::map<std::string, int64_t> failures ABSL_GUARDED_BY(mu);
  std::vector<std::string> failure_examples ABSL_GUARDED_BY(mu);
  std::atomic<bool> stop{false};

  std::vector<std::thread> workers;
  for (int w = 0; w < absl::GetFlag(FLAGS_workers); ++w) {
    workers.emplace_back([&, w] {
      const std::vector<Scenario>& scenarios = Scenarios();
      const std::string user = absl::StrCat("soak-", w);
      for (int64_t n = w; !stop.load(); ++n) {
        const Scenario& scenario = scenarios[n % scenarios.size()];
        const absl::Status status = scenario.run(edge, user, n);
        absl::MutexLock lock(&mu);
        ++turns[scenario.name];
        if (!status.ok()) {
          ++failures[scenario.name];
          if (failure_examples.size() < 20) {
            failure_examples.push_back(absl::StrCat(scenario.name, ": ", status.ToString()));
          }
        }
      }
    });
  }

  std::ofstream samples(absl::GetFlag(FLAGS_samples));
  samples << "seconds";
  std::vector<Series> series;
  for (const auto& [name, pid] : services) {
    samples << "\t" << name << "_rss_mib\t" << name << "_open_files\t" << name << "_threads";
    series.push_back({absl::StrCat(name, " rss_mib"), 4, {}});
    series.push_back({absl::StrCat(name, " open_files"), 8, {}});
    series.push_back({absl::StrCat(name, " threads"), 8, {}});
  }
  samples << "\n";
  const absl::Time start = absl::Now();
  std::vector<std::string> gone;  // Services that were not there to sample.
  for (int64_t second = 0; absl::Now() - start < run_time; ++second) {
    absl::SleepFor(start + absl::Seconds(second + 1) - absl::Now());
    samples << second + 1;
    for (size_t s = 0; s < services.size(); ++s) {
      const Usage usage = Sample(services[s].second);
      if (!usage.alive && gone.size() < 10) {
        gone.push_back(absl::StrCat(services[s].first, " at ", second + 1, " s"));
      }
      samples << absl::StrFormat("\t%.1f\t%d\t%d", usage.rss_mib, usage.open_files, usage.threads);
      series[3 * s].values.push_back(usage.rss_mib);
      series[3 * s + 1].values.push_back(static_cast<double>(usage.open_files));
      series[3 * s + 2].values.push_back(static_cast<double>(usage.threads));
    }
    samples << "\n" << std::flush;
  }
  stop = true;
  for (std::thread& worker : workers) {
    worker.join();
  }

  std::ostringstream summary;
  bool pass = true;
  {
    absl::MutexLock lock(&mu);
    int64_t all_turns = 0;
    int64_t all_failures = 0;
    summary << "turns by scenario (failed):";
    for (const auto& [name, count] : turns) {
      summary << " " << name << "=" << count << "(" << failures[name] << ")";
      all_turns += count;
      all_failures += failures[name];
    }
    summary << "\nturns: " << all_turns << ", failed: " << all_failures << "\n";
    for (const std::string& example : failure_examples) {
      summary << "  failure: " << example << "\n";
    }
    pass = all_failures == 0 && all_turns > 0;
  }
  for (const std::string& service : gone) {
    summary << "not running: " << service << "\n";
    pass = false;
  }
  for (const Series& line : series) {
    const size_t n = line.values.size();
    const size_t warm_up = std::max<size_t>(60, n / 5);
    if (n < warm_up + 8) {
      summary << line.name << ": too few samples after the warm-up\n";
      pass = false;
      continue;
    }
    const size_t quarter = (n - warm_up) / 4;
    const double first = Mean(line.values, warm_up, warm_up + quarter);
    const double last = Mean(line.values, n - quarter, n);
    const double limit = first * 1.10 + line.slack;
    const bool flat = last <= limit;
    summary << absl::StrFormat("%-24s first quarter %9.1f  last quarter %9.1f  limit %9.1f  %s\n",
                               line.name, first, last, limit, flat ? "flat" : "GROWS");
    pass = pass && flat;
  }
  summary << (pass ? "PASS" : "FAIL") << "\n";
  std::ofstream(absl::GetFlag(FLAGS_summary)) << summary.str();
  std::fputs(summary.str().c_str(), stdout);
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace parley::soak

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return parley::soak::Run();
}
