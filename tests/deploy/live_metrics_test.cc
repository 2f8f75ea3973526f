// The three real services as Prometheus sees them: their live /metrics pass
// `promtool check metrics`, and a real Prometheus server scraping them on
// loopback records the turn and token counters moving during a chat turn.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "gtest/gtest.h"
#include "tests/deploy/run_command.h"
#include "tests/support/child_process.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

// A loopback port nobody listens on right now. Prometheus prints no bound
// address, so it cannot be given port 0; the window between closing this
// socket and Prometheus binding the port is the only race left.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(address.sin_port);
}

// The system's Prometheus server (Debian package `prometheus`), with its log
// (stderr) read line by line so the test can wait for "ready".
class PrometheusServer {
 public:
  static std::unique_ptr<PrometheusServer> Start(const std::string& dir, int port) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      return nullptr;
    }
    std::vector<std::string> args = {
        "prometheus",
        absl::StrCat("--config.file=", dir, "/prometheus.yml"),
        absl::StrCat("--storage.tsdb.path=", dir, "/data"),
        absl::StrCat("--web.listen-address=127.0.0.1:", port),
        "--log.level=info",
    };
    std::vector<char*> argv;
    for (std::string& arg : args) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(fds[1], STDERR_FILENO);
      dup2(fds[1], STDOUT_FILENO);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execvp("prometheus", argv.data());
      _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      return nullptr;
    }
    return std::unique_ptr<PrometheusServer>(new PrometheusServer(pid, fds[0]));
  }

  ~PrometheusServer() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    close(fd_);
  }

  // Reads the log until a line contains `needle`; false on exit or timeout.
  bool WaitForLog(const std::string& needle, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (log_.find(needle) == std::string::npos) {
      const int remaining = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (remaining <= 0) {
        return false;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, remaining) <= 0) {
        return false;
      }
      char buffer[4096];
      const ssize_t n = read(fd_, buffer, sizeof(buffer));
      if (n <= 0) {
        return false;
      }
      log_.append(buffer, static_cast<size_t>(n));
    }
    return true;
  }

  const std::string& log() const { return log_; }

 private:
  PrometheusServer(pid_t pid, int fd) : pid_(pid), fd_(fd) {}

  pid_t pid_;
  int fd_;
  std::string log_;
};

class LiveMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    persistence_ = ChildProcess::Start("parley-persistence",
                                       {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                                        absl::StrCat("--store=sqlite:", dir_, "/parley.db")});
    inference_ = ChildProcess::Start(
        "parley-inference",
        {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
         "--sim_ttft_ms=1", "--sim_tokens_per_second=0", "--sim_max_tokens=16"});
    ASSERT_NE(persistence_, nullptr);
    ASSERT_NE(inference_, nullptr);
    const std::string persistence_address = persistence_->WaitForListening();
    const std::string inference_address = inference_->WaitForListening();
    ASSERT_NE(persistence_address, "");
    ASSERT_NE(inference_address, "");
    persistence_metrics_ = persistence_->WaitForListening("metrics_listen");
    inference_metrics_ = inference_->WaitForListening("metrics_listen");
    edge_ = ChildProcess::Start(
        "parley-edge",
        {"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address),
         absl::StrCat("--persistence=", persistence_address), "--allow_anonymous=true"});
    ASSERT_NE(edge_, nullptr);
    edge_address_ = edge_->WaitForListening();
    ASSERT_NE(edge_address_, "");
  }

  void TearDown() override { RunCommand("rm -rf " + ShellQuote(dir_)); }

  // One turn over the native protocol; returns the number of stream_token frames.
  int ChatTurn(const std::string& id) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(edge_address_, "/ws/chat?userId=metrics-user");
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) {
      return -1;
    }
    EXPECT_TRUE((*client)
                    ->Send(absl::StrCat(R"({"type":"message","id":")", id, R"(","content":"hi"})"))
                    .ok());
    int tokens = 0;
    for (;;) {
      absl::StatusOr<json::object> frame = (*client)->ReadJson();
      EXPECT_TRUE(frame.ok()) << frame.status();
      if (!frame.ok()) {
        return -1;
      }
      const json::value* type = frame->if_contains("type");
      if (type == nullptr || !type->is_string()) {
        continue;
      }
      if (type->get_string() == "stream_token") {
        ++tokens;
      } else if (type->get_string() == "stream_complete") {
        break;
      } else if (type->get_string() == "error") {
        ADD_FAILURE() << json::serialize(*frame);
        return -1;
      }
    }
    (*client)->Close().IgnoreError();
    return tokens;
  }

  std::string dir_;
  std::unique_ptr<ChildProcess> persistence_;
  std::unique_ptr<ChildProcess> inference_;
  std::unique_ptr<ChildProcess> edge_;
  std::string edge_address_;
  std::string inference_metrics_;
  std::string persistence_metrics_;
};

// What `promtool check metrics` says about one live /metrics page.
CommandResult PromtoolCheck(const std::string& address, const std::string& dir) {
  const std::string page = dir + "/metrics.txt";
  return RunCommand("curl -sSf --max-time 10 -o " + ShellQuote(page) + " " +
                    ShellQuote(absl::StrCat("http://", address, "/metrics")) +
                    " && promtool check metrics < " + ShellQuote(page));
}

TEST_F(LiveMetricsTest, EveryServicesMetricsPassPromtool) {
  // After a turn, so the labelled series and histograms are populated.
  ASSERT_GT(ChatTurn("promtool-1"), 0);
  for (const std::string& address : {edge_address_, inference_metrics_, persistence_metrics_}) {
    const CommandResult result = PromtoolCheck(address, dir_);
    EXPECT_EQ(result.exit_code, 0) << address << "\n" << result.output;
  }
  const CommandResult inference =
      RunCommand("curl -sSf --max-time 10 " +
                 ShellQuote(absl::StrCat("http://", inference_metrics_, "/metrics")));
  EXPECT_NE(inference.output.find("parley_inference_grpc_server_handled_total{"), std::string::npos)
      << inference.output;
}

// The value of an instant query, or -1 when it has no result yet.
double Query(int port, const std::string& promql) {
  const CommandResult result =
      RunCommand(absl::StrCat("curl -sS --max-time 5 -G http://127.0.0.1:", port,
                              "/api/v1/query --data-urlencode ", ShellQuote("query=" + promql)));
  if (result.exit_code != 0) {
    return -1;
  }
  boost::system::error_code error;
  const json::value body = json::parse(result.output, error);
  if (error || !body.is_object()) {
    return -1;
  }
  const json::value* data = body.as_object().if_contains("data");
  if (data == nullptr || !data->is_object()) {
    return -1;
  }
  const json::value* results = data->as_object().if_contains("result");
  if (results == nullptr || !results->is_array() || results->as_array().empty()) {
    return -1;
  }
  // [{"metric":{…},"value":[<time>,"<value>"]}]
  const json::value& value = results->as_array()[0].as_object().at("value").as_array()[1];
  return std::strtod(std::string(value.as_string()).c_str(), nullptr);
}

// Re-queries until `promql` reaches `at_least`. Prometheus has no way to push a
// change, so this polls; the 30 s limit only bounds a failure.
double WaitForValue(int port, const std::string& promql, double at_least) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  double value = Query(port, promql);
  while (value < at_least && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    value = Query(port, promql);
  }
  return value;
}

TEST_F(LiveMetricsTest, PrometheusScrapesTheTurnAndTokenCounters) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  {
    std::ofstream config(dir_ + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
           << "scrape_configs:\n"
           << "  - job_name: parley-edge\n    static_configs: [{targets: ['" << edge_address_
           << "']}]\n"
           << "  - job_name: parley-inference\n    static_configs: [{targets: ['"
           << inference_metrics_ << "']}]\n"
           << "  - job_name: parley-persistence\n    static_configs: [{targets: ['"
           << persistence_metrics_ << "']}]\n";
  }
  std::unique_ptr<PrometheusServer> prometheus = PrometheusServer::Start(dir_, port);
  ASSERT_NE(prometheus, nullptr);
  ASSERT_TRUE(prometheus->WaitForLog("Server is ready to receive web requests", absl::Seconds(60)))
      << prometheus->log();

  // All three targets scraped once, before the turn.
  ASSERT_EQ(WaitForValue(port, R"(sum(up{job=~"parley-.+"}))", 3), 3) << prometheus->log();
  const double turns_before =
      Query(port, R"(sum(parley_edge_turns_total{job="parley-edge",outcome="complete"}))");
  EXPECT_LE(turns_before, 0);

  const int tokens = ChatTurn("scraped-1");
  ASSERT_GT(tokens, 0);

  EXPECT_GE(WaitForValue(port, R"(sum(parley_edge_turns_total{outcome="complete"}))", 1), 1);
  EXPECT_GE(WaitForValue(port, "sum(parley_edge_tokens_total)", tokens), tokens);
  EXPECT_GE(WaitForValue(port, "sum(parley_inference_tokens_total)", tokens), tokens);
  EXPECT_GE(
      WaitForValue(
          port,
          R"(sum(parley_inference_grpc_server_handled_total{grpc_method="Generate",grpc_code="OK"}))",
          1),
      1);
  EXPECT_GE(WaitForValue(port, "sum(parley_edge_time_to_first_token_seconds_count)", 1), 1);
  // Both ends of the edge's gRPC calls are counted by the interceptors.
  EXPECT_GE(
      WaitForValue(
          port,
          R"(sum(parley_edge_grpc_client_handled_total{grpc_method="Generate",grpc_code="OK"}))",
          1),
      1);
  EXPECT_GE(
      WaitForValue(port, R"(sum(parley_persistence_grpc_server_handled_total{grpc_code="OK"}))", 1),
      1);
}

}  // namespace
}  // namespace parley::testing
