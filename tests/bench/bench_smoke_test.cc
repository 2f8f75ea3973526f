// Small-scale run of the load generator against its own direct server: the
// accounting must report a clean run as clean and catch every injected fault.
// Nothing here asserts on timing.
#include <thread>
#include <vector>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "gtest/gtest.h"
#include "tools/parley-bench/direct_server.h"
#include "tools/parley-bench/load_client.h"
#include "tools/parley-bench/workloads.h"

namespace parley::bench {
namespace {

constexpr int64_t kTokens = 8;

// A direct server on a free loopback port with its own io_context threads.
class DirectFixture {
 public:
  explicit DirectFixture(Inject inject, double tokens_per_second = 0)
      : server_(ioc_, {.ttft_ms = 0,
                       .tokens_per_second = tokens_per_second,
                       .max_tokens = kTokens,
                       .inject = inject}) {
    absl::StatusOr<uint16_t> port = server_.Listen("127.0.0.1", 0);
    EXPECT_TRUE(port.ok()) << port.status();
    port_ = port.value_or(0);
    for (int i = 0; i < 2; ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
  }
  ~DirectFixture() {
    server_.Stop();
    guard_.reset();
    ioc_.stop();
    for (std::thread& t : threads_) {
      t.join();
    }
  }

  ClientOptions Options(int64_t connections, int64_t turns) const {
    ClientOptions o;
    o.port = port_;
    o.connections = connections;
    o.turns = turns;
    o.ramp = absl::ZeroDuration();
    o.source_addresses = 2;
    return o;
  }

 private:
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      ioc_.get_executor()};
  DirectServer server_;
  uint16_t port_ = 0;
  std::vector<std::thread> threads_;
};

ClientReport RunTurns(const ClientOptions& options) {
  LoadClient client(options);
  client.Connect();
  client.RunTurns();
  client.CloseAll(absl::Seconds(10));
  return client.Report();
}

TEST(BenchSmokeTest, CleanRunCountsEveryTokenAndNoFault) {
  DirectFixture direct(Inject::kNone);
  const ClientReport r = RunTurns(direct.Options(/*connections=*/20, /*turns=*/3));
  EXPECT_EQ(r.connections_established, 20);
  EXPECT_EQ(r.turns_completed, 60);
  EXPECT_EQ(r.turns_failed, 0);
  EXPECT_EQ(r.tokens, 60 * kTokens);
  EXPECT_EQ(r.token_frames, 60 * kTokens);
  EXPECT_EQ(r.lost_seqs, 0);
  EXPECT_EQ(r.repeated_seqs, 0);
  EXPECT_EQ(r.out_of_order_seqs, 0);
  EXPECT_EQ(r.faulty_messages, 0);
  EXPECT_EQ(r.error_frames, 0);
  EXPECT_EQ(r.protocol_errors, 0);
  EXPECT_EQ(r.ttft_ms.count, 60u);
  EXPECT_EQ(r.itl_ms.count, static_cast<uint64_t>(60 * (kTokens - 1)));
}

TEST(BenchSmokeTest, DetectsALostSeqInEveryReply) {
  DirectFixture direct(Inject::kDropSeq);
  const ClientReport r = RunTurns(direct.Options(5, 2));
  EXPECT_EQ(r.turns_completed, 10);
  EXPECT_EQ(r.lost_seqs, 10);
  EXPECT_EQ(r.repeated_seqs, 0);
  EXPECT_EQ(r.faulty_messages, 10);
  // Tokens are the engine's (the reply's completionTokens); the frames show what arrived.
  EXPECT_EQ(r.tokens, 10 * kTokens);
  EXPECT_EQ(r.token_frames, 10 * (kTokens - 1));
}

TEST(BenchSmokeTest, DetectsARepeatedSeqInEveryReply) {
  DirectFixture direct(Inject::kRepeatSeq);
  const ClientReport r = RunTurns(direct.Options(5, 2));
  EXPECT_EQ(r.turns_completed, 10);
  EXPECT_EQ(r.repeated_seqs, 10);
  EXPECT_EQ(r.lost_seqs, 0);
  EXPECT_EQ(r.faulty_messages, 10);
}

TEST(BenchSmokeTest, DetectsAnOutOfOrderSeqInEveryReply) {
  DirectFixture direct(Inject::kReorderSeq);
  const ClientReport r = RunTurns(direct.Options(5, 2));
  EXPECT_EQ(r.turns_completed, 10);
  EXPECT_EQ(r.out_of_order_seqs, 10);
  EXPECT_EQ(r.lost_seqs, 0);
  EXPECT_EQ(r.repeated_seqs, 0);
}

TEST(BenchSmokeTest, PacedRepliesAndIdleConnectionsAnswer) {
  DirectFixture direct(Inject::kNone, /*tokens_per_second=*/1000);
  const ClientReport paced = RunTurns(direct.Options(10, 1));
  EXPECT_EQ(paced.tokens, 10 * kTokens);
  EXPECT_EQ(paced.faulty_messages, 0);

  boost::json::object idle =
      RunIdle(direct.Options(50, 0), absl::ZeroDuration(), {{"self", getpid()}});
  EXPECT_EQ(idle.at("pongs").as_int64(), 50);
  EXPECT_EQ(idle.at("connections").at("established").as_int64(), 50);
  EXPECT_TRUE(idle.at("processes").as_object().contains("self"));
}

TEST(BenchSmokeTest, RefusedConnectionsAreCountedNotHung) {
  ClientOptions o;
  o.port = 1;  // nothing listens on a privileged loopback port here
  o.connections = 3;
  LoadClient client(o);
  client.Connect();
  client.RunTurns();
  EXPECT_EQ(client.Report().connect_failures, 3);
}

}  // namespace
}  // namespace parley::bench
