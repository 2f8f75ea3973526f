// The client-deadline workload of parley-bench against the real binaries, inference on its
// openai engine in front of the bench's own upstream stand-in: every turn on every path must end
// with deadline_exceeded and every upstream request must be seen closed, or the benchmark's
// numbers would describe something else. Nothing here asserts on timing.
#include "tools/parley-bench/deadline_workload.h"

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/support/child_process.h"
#include "tools/parley-bench/upstream_server.h"

namespace parley::bench {
namespace {

namespace json = boost::json;
using ::parley::testing::ChildProcess;

TEST(DeadlineWorkloadTest, EveryTurnIsCutAtItsDeadlineAndEveryUpstreamRequestIsClosed) {
  boost::asio::io_context ioc;
  auto guard = boost::asio::make_work_guard(ioc);
  UpstreamServer upstream(ioc, /*content_chunks=*/2);
  absl::StatusOr<uint16_t> upstream_port = upstream.Listen("127.0.0.1", 0);
  ASSERT_TRUE(upstream_port.ok()) << upstream_port.status();
  std::thread io([&ioc] { ioc.run(); });

  const std::string data_dir = testing::MakeTempDir();
  std::unique_ptr<ChildProcess> persistence = ChildProcess::Start(
      "parley-persistence", {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                             absl::StrCat("--store=sqlite:", data_dir, "/parley.db")});
  std::unique_ptr<ChildProcess> inference = ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=openai",
       absl::StrCat("--upstream_url=http://127.0.0.1:", *upstream_port),
       "--upstream_model=bench-upstream"});
  ASSERT_NE(persistence, nullptr);
  ASSERT_NE(inference, nullptr);
  const std::string persistence_address = persistence->WaitForListening();
  const std::string inference_address = inference->WaitForListening();
  std::unique_ptr<ChildProcess> edge = ChildProcess::Start(
      "parley-edge", {"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address),
                      absl::StrCat("--persistence=", persistence_address), "--allow_anonymous"});
  ASSERT_NE(edge, nullptr);
  const std::string edge_address = edge->WaitForListening();
  const uint16_t edge_port =
      static_cast<uint16_t>(std::stoi(edge_address.substr(edge_address.rfind(':') + 1)));

  const json::object result =
      RunDeadline({.host = "127.0.0.1",
                   .port = edge_port,
                   .upstream_host = "127.0.0.1",
                   .upstream_port = *upstream_port,
                   .paths = {DeadlinePath::kNative, DeadlinePath::kOpenAi, DeadlinePath::kAiSdk},
                   // Long enough for a turn to reach the upstream on a loaded machine (with
                   // 200 ms a request was sometimes never made); the stand-in holds every
                   // request open, so each turn still ends at its deadline.
                   .deadline_ms = 2000,
                   .runs = 3});
  EXPECT_FALSE(result.contains("upstream_record_failure")) << json::serialize(result);
  for (const char* path : {"native", "openai", "ai_sdk"}) {
    const json::object& p = result.at("paths").at(path).as_object();
    EXPECT_EQ(p.at("runs").to_number<int64_t>(), 3) << path;
    EXPECT_EQ(p.at("deadline_exceeded").to_number<int64_t>(), 3) << path << json::serialize(p);
    EXPECT_EQ(p.at("failed").to_number<int64_t>(), 0) << path << json::serialize(p);
    EXPECT_EQ(p.at("upstream_request_missing").to_number<int64_t>(), 0) << path;
    EXPECT_EQ(p.at("upstream_still_open").to_number<int64_t>(), 0) << path;
    EXPECT_EQ(p.at("upstream_closed_ms_after_deadline").at("count").to_number<int64_t>(), 3)
        << path;
  }

  upstream.Stop();
  guard.reset();
  ioc.stop();
  io.join();
}

}  // namespace
}  // namespace parley::bench
