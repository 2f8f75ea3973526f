// The edge when the process runs out of file descriptors: it must neither spin nor flood its log,
// and it must serve again as soon as descriptors are free.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/child_process.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

// An open TCP connection to `port` on loopback that sends nothing; -1 on failure.
int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    return -1;
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// The value of an unlabelled counter in a Prometheus text page; -1 when absent.
double CounterValue(const std::string& page, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    std::pair<absl::string_view, absl::string_view> sample =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    double value = 0;
    if (sample.first == name && absl::SimpleAtod(sample.second, &value)) {
      return value;
    }
  }
  return -1;
}

int CountLines(ChildProcess& process, const std::string& needle) {
  int count = 0;
  for (const std::string& line : process.Lines()) {
    count += line.find(needle) != std::string::npos ? 1 : 0;
  }
  return count;
}

TEST(EdgeResourcesTest, OutOfFileDescriptorsTheEdgeRetriesSlowlyLogsRarelyAndServesAgain) {
  // The edge inherits a small descriptor limit: lowered around its start only, since this
  // test needs many descriptors of its own.
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  rlimit small = original;
  small.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &small), 0);
  auto edge = ChildProcess::Start("parley-edge", {"--listen=127.0.0.1:0", "--inference=127.0.0.1:1",
                                                  "--persistence=127.0.0.1:1", "--allow_anonymous",
                                                  "--threads=2", "--handshake_timeout_ms=120000"});
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  ASSERT_NE(edge, nullptr);
  const std::string listen = edge->WaitForListening();
  ASSERT_FALSE(listen.empty());
  uint32_t port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(listen.substr(listen.rfind(':') + 1), &port));

  // Connections that never send a request hold a descriptor each until the handshake timeout.
  std::vector<int> clients;
  for (int i = 0; i < 100; ++i) {
    const int fd = Connect(static_cast<uint16_t>(port));
    ASSERT_GE(fd, 0);
    clients.push_back(fd);
  }
  ASSERT_FALSE(edge->WaitForLine("accept failed").empty()) << "the edge never ran out";
  const auto exhausted_at = std::chrono::steady_clock::now();
  // A window in which a spinning listener would fail hundreds of thousands of times.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  for (int fd : clients) {
    close(fd);
  }
  const double exhausted_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - exhausted_at).count();

  // Served again once the descriptors are free, and every failure was counted.
  absl::StatusOr<HttpResponse> metrics = HttpGet(listen, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  const double failures = CounterValue(metrics->body, "parley_edge_accept_failures_total");
  EXPECT_GT(failures, 0);
  // Retries are at most 250 ms apart once backed off (a few quicker ones first), whatever the
  // load: a slower machine only retries less.
  EXPECT_LT(failures, 10 + 5 * (exhausted_seconds + 1)) << "over " << exhausted_seconds << " s";
  EXPECT_LE(CountLines(*edge, "accept failed"), 1 + static_cast<int>(exhausted_seconds) + 1);

  edge->Signal(SIGTERM);
  EXPECT_EQ(edge->Wait(), 0);
}

}  // namespace
}  // namespace parley::testing
