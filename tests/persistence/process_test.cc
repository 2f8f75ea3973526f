// Drives real parley-persistence processes: crashes, restarts, and replicas
// sharing one PostgreSQL.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/persistence/test_stores.h"
#include "tests/support/child_process.h"

namespace parley::persistence {
namespace {

using ::parley::testing::ChildProcess;
namespace v1 = ::parley::persistence::v1;

std::string DeltaText(int64_t seq) { return absl::StrCat("d", seq, ";"); }

std::string TextThrough(int64_t last_seq) {
  std::string text;
  for (int64_t seq = 1; seq <= last_seq; ++seq) {
    text += DeltaText(seq);
  }
  return text;
}

// GET /metrics over a plain socket; "" if it cannot connect.
std::string FetchMetrics(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &target.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: " + address + "\r\n\r\n";
  EXPECT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) {
    response.append(buffer, n);
  }
  close(fd);
  return response;
}

struct Server {
  std::unique_ptr<ChildProcess> process;
  std::unique_ptr<v1::ConversationService::Stub> stub;
};

Server StartServer(const std::string& store_spec) {
  Server server;
  server.process = ChildProcess::Start(
      "parley-persistence",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--store=" + store_spec,
       // Replies these tests leave streaming across a restart must not lapse meanwhile,
       // however slow the machine.
       "--stream_lease_ms=600000"});
  EXPECT_NE(server.process, nullptr);
  if (server.process == nullptr) {
    return server;
  }
  const std::string address = server.process->WaitForListening();
  EXPECT_NE(address, "") << "parley-persistence did not start";
  server.stub = v1::ConversationService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  return server;
}

v1::Message AppendStreaming(v1::ConversationService::Stub& stub, const std::string& user) {
  grpc::ClientContext context;
  v1::AppendMessageRequest request;
  request.set_user_id(user);
  request.set_role(v1::ROLE_ASSISTANT);
  request.set_status(v1::MESSAGE_STATUS_STREAMING);
  v1::AppendMessageResponse response;
  const grpc::Status status = stub.AppendMessage(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.message();
}

grpc::Status GetMessage(v1::ConversationService::Stub& stub, const std::string& user,
                        const std::string& id, v1::Message* message) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetMessageRequest request;
  request.set_user_id(user);
  request.set_message_id(id);
  v1::GetMessageResponse response;
  grpc::Status status = stub.GetMessage(&context, request, &response);
  *message = response.message();
  return status;
}

// Writes seqs [first, last] (and `finish` if asked), then reads acks until
// `wait_for` is acknowledged; returns the highest acknowledged seq. The
// stream is left open (and dropped) so a test can kill the server right away.
int64_t WriteAndAwaitAck(
    grpc::ClientReaderWriter<v1::WriteMessageStreamRequest, v1::WriteMessageStreamResponse>& stream,
    int64_t first, int64_t last, int64_t wait_for, bool finish) {
  v1::WriteMessageStreamRequest frame;
  for (int64_t seq = first; seq <= last; ++seq) {
    frame.mutable_delta()->set_seq(seq);
    frame.mutable_delta()->set_text(DeltaText(seq));
    EXPECT_TRUE(stream.Write(frame));
  }
  if (finish) {
    frame.mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
    frame.mutable_finish()->set_finish_reason("stop");
    EXPECT_TRUE(stream.Write(frame));
  }
  int64_t acked = 0;
  v1::WriteMessageStreamResponse ack;
  while (acked < wait_for && stream.Read(&ack)) {
    acked = std::max(acked, ack.durable_seq());
  }
  return acked;
}

class ProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir(); }
  void TearDown() override { testing::RemoveDir(dir_); }
  std::string Spec() { return testing::StoreSpec(GetParam(), dir_); }

  std::string dir_;
};

TEST_P(ProcessTest, AcknowledgedDeltasSurviveSigkill) {
  const std::string user = testing::UniqueUser("crash");
  std::vector<std::pair<std::string, int64_t>> acknowledged;  // message id, highest acked seq
  Server server = StartServer(Spec());
  ASSERT_NE(server.stub, nullptr);
  // Several streams at once, killed while later deltas are still in flight.
  constexpr int kStreams = 4;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<
      grpc::ClientReaderWriter<v1::WriteMessageStreamRequest, v1::WriteMessageStreamResponse>>>
      streams;
  std::vector<v1::Message> messages;
  for (int i = 0; i < kStreams; ++i) {
    messages.push_back(AppendStreaming(*server.stub, user));
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(server.stub->WriteMessageStream(contexts.back().get()));
    v1::WriteMessageStreamRequest open;
    open.mutable_open()->set_user_id(user);
    open.mutable_open()->set_message_id(messages.back().id());
    ASSERT_TRUE(streams.back()->Write(open));
  }
  for (int i = 0; i < kStreams; ++i) {
    acknowledged.emplace_back(messages[i].id(),
                              WriteAndAwaitAck(*streams[i], 1, 100, 50, /*finish=*/false));
  }
  // More deltas in flight, then the kill right after their first acks.
  for (int i = 0; i < kStreams; ++i) {
    acknowledged[i].second =
        std::max(acknowledged[i].second, WriteAndAwaitAck(*streams[i], 101, 300, 101, false));
  }
  server.process->Signal(SIGKILL);
  EXPECT_EQ(server.process->Wait(), 128 + SIGKILL);
  for (auto& context : contexts) {
    context->TryCancel();
  }
  streams.clear();

  Server restarted = StartServer(Spec());
  ASSERT_NE(restarted.stub, nullptr);
  for (const auto& [id, acked] : acknowledged) {
    ASSERT_GE(acked, 101);
    v1::Message message;
    const grpc::Status status = GetMessage(*restarted.stub, user, id, &message);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_GE(message.last_seq(), acked) << "an acknowledged delta was lost";
    EXPECT_EQ(message.content(), TextThrough(message.last_seq()));
    EXPECT_EQ(message.status(), v1::MESSAGE_STATUS_STREAMING);
  }
}

TEST_P(ProcessTest, ServesMetricsAndStopsCleanlyOnSigterm) {
  Server server = StartServer(Spec());
  ASSERT_NE(server.stub, nullptr);
  AppendStreaming(*server.stub, testing::UniqueUser("metrics"));
  const std::string metrics = FetchMetrics(server.process->WaitForListening("metrics_listen"));
  for (const char* name :
       {"parley_persistence_operation_duration_seconds", "parley_persistence_write_batch_size",
        "parley_persistence_transactions_per_commit", "parley_persistence_durable_lag_seconds",
        "parley_persistence_watchers", "parley_persistence_deltas_total",
        "parley_persistence_streams_active"}) {
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  }
  EXPECT_NE(metrics.find("operation=\"append_message\""), std::string::npos);
  EXPECT_NE(metrics.find("parley_persistence_grpc_server_handled_total"), std::string::npos);
  server.process->Signal(SIGTERM);
  EXPECT_EQ(server.process->Wait(), 0);
}

// Starts parley-persistence with `flags` where the address `taken` is held by
// another server; expects it to say which address is in use and exit 1.
void ExpectRefusedAddress(const std::vector<std::string>& flags, const std::string& taken) {
  std::unique_ptr<ChildProcess> second = ChildProcess::Start("parley-persistence", flags);
  ASSERT_NE(second, nullptr);
  // Its first log line: the refusal, or (the fault) "listening" beside the first server.
  const std::string line = second->WaitForLine("\"level\"");
  EXPECT_NE(line.find("cannot start"), std::string::npos) << line;
  EXPECT_NE(line.find(taken + " is already in use"), std::string::npos) << line;
  if (line.find("\"listening\"") != std::string::npos) {
    second->Signal(SIGTERM);
  }
  EXPECT_EQ(second->Wait(), 1) << line;
}

TEST_P(ProcessTest, ASecondServerOnATakenAddressNamesItAndExitsOne) {
  Server first = StartServer(Spec());
  ASSERT_NE(first.stub, nullptr);
  const std::string listen = first.process->WaitForListening();
  const std::string metrics = first.process->WaitForListening("metrics_listen");
  // Its own database, so only the address can stand in its way.
  const std::string store = "--store=" + testing::StoreSpec(GetParam(), dir_ + "/second");
  ExpectRefusedAddress({"--listen=" + listen, "--metrics_listen=127.0.0.1:0", store}, listen);
  ExpectRefusedAddress({"--listen=127.0.0.1:0", "--metrics_listen=" + metrics, store}, metrics);

  // The first server still serves.
  EXPECT_FALSE(AppendStreaming(*first.stub, testing::UniqueUser("first")).id().empty());
  EXPECT_NE(FetchMetrics(metrics).find("operation=\"append_message\""), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Sqlite, ProcessTest, ::testing::Values("sqlite"));
INSTANTIATE_TEST_SUITE_P(Postgres, ProcessTest, ::testing::Values("postgresql"));

TEST(PostgresProcessTest, WatchFollowsAStreamWrittenThroughAnotherReplica) {
  const std::string spec = testing::StoreSpec("postgresql", "");
  Server writer = StartServer(spec);
  Server reader = StartServer(spec);
  ASSERT_NE(writer.stub, nullptr);
  ASSERT_NE(reader.stub, nullptr);
  const std::string user = testing::UniqueUser("replica");
  const v1::Message message = AppendStreaming(*writer.stub, user);

  grpc::ClientContext write_context;
  auto stream = writer.stub->WriteMessageStream(&write_context);
  v1::WriteMessageStreamRequest open;
  open.mutable_open()->set_user_id(user);
  open.mutable_open()->set_message_id(message.id());
  ASSERT_TRUE(stream->Write(open));
  ASSERT_EQ(WriteAndAwaitAck(*stream, 1, 3, 3, false), 3);

  grpc::ClientContext watch_context;
  // Without the cross-replica notification the watch would wait forever.
  watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::WatchMessageRequest watch;
  watch.set_user_id(user);
  watch.set_message_id(message.id());
  auto events = reader.stub->WatchMessage(&watch_context, watch);
  v1::WatchMessageResponse event;
  ASSERT_TRUE(events->Read(&event));
  ASSERT_TRUE(event.has_delta());
  std::string text = event.delta().text();
  EXPECT_EQ(event.delta().seq(), 3);

  // Written through the other replica after the watcher caught up.
  WriteAndAwaitAck(*stream, 4, 6, 6, /*finish=*/true);
  v1::WatchFinish finish;
  while (events->Read(&event)) {
    if (event.has_delta()) {
      text += event.delta().text();
    } else {
      finish = event.finish();
    }
  }
  const grpc::Status status = events->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(text, TextThrough(6));
  EXPECT_EQ(finish.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(finish.last_seq(), 6);
  stream->WritesDone();
  v1::WriteMessageStreamResponse ack;
  while (stream->Read(&ack)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(PostgresProcessTest, ServiceRecoversAfterDatabaseRestart) {
  const char* restart = std::getenv("PARLEY_TEST_POSTGRES_RESTART");
  ASSERT_NE(restart, nullptr) << "run through with_postgres.sh";
  Server server = StartServer(testing::StoreSpec("postgresql", ""));
  ASSERT_NE(server.stub, nullptr);
  const std::string user = testing::UniqueUser("restart");
  const v1::Message before = AppendStreaming(*server.stub, user);
  ASSERT_EQ(std::system(restart), 0);
  v1::Message read;
  const grpc::Status status = GetMessage(*server.stub, user, before.id(), &read);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(read.id(), before.id());
  EXPECT_FALSE(AppendStreaming(*server.stub, user).id().empty());
}

}  // namespace
}  // namespace parley::persistence
