#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/persistence_client.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/edge/fake_backends.h"

namespace parley::edge {
namespace {

using ::testing::ElementsAre;

// A persistence on a Unix socket that listens only when the test says so: until then the
// writer cannot send anything, so every Append queues behind the stream it waits for.
class MessageWriterTest : public ::testing::Test {
 protected:
  MessageWriterTest()
      : path_(absl::StrCat(::testing::TempDir(), "parley-writer-", getpid(), ".sock")) {
    std::remove(path_.c_str());
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
    client_ = std::make_unique<PersistenceClient>(
        grpc::CreateCustomChannel("unix:" + path_, grpc::InsecureChannelCredentials(), args),
        absl::Seconds(10), /*ready_timeout=*/absl::Seconds(30));
  }

  ~MessageWriterTest() override {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
    std::remove(path_.c_str());
  }

  void Listen() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + path_, grpc::InsecureServerCredentials());
    builder.RegisterService(&persistence_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  // A writer of a new assistant message in conversation "c1", and its end once it comes.
  struct Writing {
    absl::Notification done;
    MessageWriter::Result result;
    std::shared_ptr<MessageWriter> writer;
  };
  std::unique_ptr<Writing> StartWriting() {
    auto writing = std::make_unique<Writing>();
    const std::string id =
        persistence_.Seed("alice", "c1", persistence_pb::ROLE_ASSISTANT, /*content=*/"");
    writing->writer = client_->OpenWriter("alice", id, common::NewTraceContext(),
                                          [writing = writing.get()](MessageWriter::Result r) {
                                            writing->result = std::move(r);
                                            writing->done.Notify();
                                          });
    return writing;
  }

  const std::string path_;
  testing::FakePersistence persistence_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<PersistenceClient> client_;
};

TEST_F(MessageWriterTest, DeltasQueuedBehindAWriteGoOutInOneMessageAndALoneOneAtOnce) {
  std::unique_ptr<Writing> writing = StartWriting();
  const std::shared_ptr<MessageWriter>& writer = writing->writer;
  const MessageWriter::Result& result = writing->result;
  std::string expected;
  for (int seq = 1; seq <= 50; ++seq) {
    writer->Append(seq, absl::StrCat("t", seq, " "));
    expected += absl::StrCat("t", seq, " ");
  }
  EXPECT_EQ(writer->pending(), 50u);

  Listen();
  ASSERT_TRUE(persistence_.AwaitDeltaFrames(1, absl::Seconds(30)));
  EXPECT_THAT(persistence_.DeltasPerFrame(), ElementsAre(50)) << "one message, not fifty";

  // Nothing queued behind it: a token goes out by itself, without waiting for company.
  writer->Append(51, "end");
  expected += "end";
  ASSERT_TRUE(persistence_.AwaitDeltaFrames(2, absl::Seconds(30)));
  EXPECT_THAT(persistence_.DeltasPerFrame(), ElementsAre(50, 1));

  writer->Finish(persistence_pb::MESSAGE_STATUS_COMPLETE, "stop", 1, 51);
  ASSERT_TRUE(writing->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(result.status.ok()) << result.status;
  EXPECT_TRUE(result.finished);
  EXPECT_EQ(result.durable_seq, 51);
  EXPECT_EQ(writer->pending(), 0u);
  std::vector<persistence_pb::Message> stored = persistence_.Messages("c1");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].content(), expected);
  EXPECT_EQ(stored[0].last_seq(), 51);
}

// Waits until persistence has acknowledged every delta appended so far.
bool AwaitAcked(const MessageWriter& writer) {
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (writer.pending() > 0) {
    if (absl::Now() > until) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// The reply's last delta and its finish: one `last` frame where persistence takes it (its
// acknowledgements say so), a `delta` and a `finish` where it predates the frame.
TEST_F(MessageWriterTest, AReplysLastDeltaAndItsFinishGoInOneMessageWherePersistenceTakesIt) {
  Listen();
  for (const bool takes_last : {true, false}) {
    SCOPED_TRACE(takes_last ? "a persistence that takes `last`" : "one that predates it");
    persistence_.Reset();
    persistence_.TakeLast(takes_last);
    std::unique_ptr<Writing> writing = StartWriting();
    const MessageWriter::Result& result = writing->result;
    writing->writer->Append(1, "Hello, ");
    ASSERT_TRUE(AwaitAcked(*writing->writer));
    writing->writer->AppendLast(2, "world.", persistence_pb::MESSAGE_STATUS_COMPLETE, "stop", 3, 2);
    ASSERT_TRUE(writing->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_TRUE(result.status.ok()) << result.status;
    EXPECT_TRUE(result.finished);
    EXPECT_EQ(result.durable_seq, 2);
    if (takes_last) {
      EXPECT_THAT(persistence_.FrameKinds(), ElementsAre("delta", "last"));
    } else {
      EXPECT_THAT(persistence_.FrameKinds(), ElementsAre("delta", "delta", "finish"));
    }
    std::vector<persistence_pb::Message> stored = persistence_.Messages("c1");
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_EQ(stored[0].content(), "Hello, world.");
    EXPECT_EQ(stored[0].last_seq(), 2);
    EXPECT_EQ(stored[0].status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
    EXPECT_EQ(stored[0].usage().completion_tokens(), 2);
  }
}

}  // namespace
}  // namespace parley::edge
