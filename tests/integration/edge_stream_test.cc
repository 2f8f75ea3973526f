// What happens to a reply when the client cancels it, drops its socket, sends the same message
// twice or inference dies: the real binaries over real WebSockets, checked against what
// persistence stored.
#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/support/reply_checksum.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;
using ::parley::testing::ChildProcess;
using ::parley::testing::IndependentSha256;
using ::parley::testing::Int;
using ::parley::testing::ReadUntil;
using ::parley::testing::Str;
using ::parley::testing::VerifyReplyChecksum;
using ::parley::testing::WsClient;

// Tokens of one reply as a client saw them.
struct Received {
  std::string text;
  int64_t last_seq = 0;
  bool duplicate_or_gap = false;
  std::optional<json::object> end;  // stream_complete / stream_cancelled / stream_interrupted.
};

class EdgeStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_dir_ = new std::string(testing::MakeTempDir());
    persistence_ = ChildProcess::Start("parley-persistence",
                                       {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                                        absl::StrCat("--store=sqlite:", *data_dir_, "/parley.db"),
                                        // Short, so an abandoned reply ends soon.
                                        "--stream_lease_ms=1000"})
                       .release();
    persistence_address_ = new std::string(persistence_->WaitForListening());
    // Slow enough that a client can act in the middle of a reply.
    inference_ = StartInference().release();
    inference_address_ = new std::string(inference_->WaitForListening());
    edge_a_ = StartEdge(*inference_address_).release();
    edge_a_address_ = new std::string(edge_a_->WaitForListening());
    edge_b_ = StartEdge(*inference_address_).release();
    edge_b_address_ = new std::string(edge_b_->WaitForListening());
  }

  static void TearDownTestSuite() {
    delete edge_a_;
    delete edge_b_;
    delete inference_;
    delete persistence_;
  }

  static std::unique_ptr<ChildProcess> StartInference() {
    return ChildProcess::Start(
        "parley-inference",
        {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
         "--sim_ttft_ms=1", "--sim_tokens_per_second=20", "--sim_max_tokens=60"});
  }

  static std::unique_ptr<ChildProcess> StartEdge(const std::string& inference_address) {
    return ChildProcess::Start(
        "parley-edge", {"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address),
                        absl::StrCat("--persistence=", *persistence_address_), "--allow_anonymous",
                        "--max_concurrent_turns=0"});
  }

  static std::unique_ptr<WsClient> Connect(const std::string& address, const std::string& user) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(address, absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // Reads stream_tokens until `stop_after_seq` is reached (0: until the reply ends).
  static void ReadTokens(WsClient& client, Received& received, int64_t stop_after_seq = 0) {
    while (stop_after_seq == 0 || received.last_seq < stop_after_seq) {
      absl::StatusOr<json::object> frame = client.ReadJson();
      if (!frame.ok()) {
        ADD_FAILURE() << "stream ended early: " << frame.status();
        return;
      }
      const std::string type = Str(*frame, "type");
      if (type == "stream_token") {
        // A merged token covers several seqs; it must still start right after the last one.
        if (Int(*frame, "seq") <= received.last_seq) {
          received.duplicate_or_gap = true;
        }
        received.last_seq = Int(*frame, "seq");
        received.text += Str(*frame, "token");
        continue;
      }
      if (type == "stream_complete" || type == "stream_cancelled" || type == "stream_interrupted") {
        received.end = *frame;
        return;
      }
      ADD_FAILURE() << "unexpected frame: " << json::serialize(*frame);
      return;
    }
  }

  static json::object Message(const std::string& id) {
    return json::object{{"type", "message"}, {"id", id}, {"content", "Tell me a long story."}};
  }

  static persistence_pb::Message Stored(const std::string& user, const std::string& message_id) {
    auto stub = persistence_pb::ConversationService::NewStub(
        grpc::CreateChannel(*persistence_address_, grpc::InsecureChannelCredentials()));
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    persistence_pb::GetMessageResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->GetMessage(&context, request, &response).ok());
    return response.message();
  }

  static std::string* data_dir_;
  static ChildProcess* persistence_;
  static ChildProcess* inference_;
  static ChildProcess* edge_a_;
  static ChildProcess* edge_b_;
  static std::string* persistence_address_;
  static std::string* inference_address_;
  static std::string* edge_a_address_;
  static std::string* edge_b_address_;
};

std::string* EdgeStreamTest::data_dir_ = nullptr;
ChildProcess* EdgeStreamTest::persistence_ = nullptr;
ChildProcess* EdgeStreamTest::inference_ = nullptr;
ChildProcess* EdgeStreamTest::edge_a_ = nullptr;
ChildProcess* EdgeStreamTest::edge_b_ = nullptr;
std::string* EdgeStreamTest::persistence_address_ = nullptr;
std::string* EdgeStreamTest::inference_address_ = nullptr;
std::string* EdgeStreamTest::edge_a_address_ = nullptr;
std::string* EdgeStreamTest::edge_b_address_ = nullptr;

TEST_F(EdgeStreamTest, CancelStoresExactlyTheStreamedPrefix) {
  std::unique_ptr<WsClient> client = Connect(*edge_a_address_, "cancel-user");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendJson(Message("cancel-1")).ok());
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  const std::string message_id = Str(*start, "messageId");

  Received received;
  ReadTokens(*client, received, /*stop_after_seq=*/3);
  const json::object cancel{{"type", "cancel"}, {"messageId", message_id}};
  ASSERT_TRUE(client->SendJson(cancel).ok());
  ReadTokens(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_cancelled");
  EXPECT_EQ(Str(*received.end, "messageId"), message_id);
  EXPECT_EQ(Int(*received.end, "lastSeq"), received.last_seq);
  EXPECT_FALSE(received.duplicate_or_gap);

  // Repeating it is harmless: the connection goes on as before.
  ASSERT_TRUE(client->SendJson(cancel).ok());
  ASSERT_TRUE(client->SendJson(json::object{{"type", "ping"}}).ok());
  absl::StatusOr<json::object> pong = client->ReadJson();
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(Str(*pong, "type"), "pong");

  const persistence_pb::Message stored = Stored("cancel-user", message_id);
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_CANCELLED);
  EXPECT_EQ(stored.content(), received.text);
  EXPECT_EQ(stored.last_seq(), received.last_seq);
  EXPECT_EQ(stored.sha256(), IndependentSha256(stored.content()));
  EXPECT_TRUE(VerifyReplyChecksum(received.text, *received.end).ok())
      << VerifyReplyChecksum(received.text, *received.end);
}

TEST_F(EdgeStreamTest, ResumeOnASecondEdgeAfterADroppedSocketYieldsTheWholeText) {
  std::string message_id;
  Received received;
  {
    std::unique_ptr<WsClient> client = Connect(*edge_a_address_, "resume-user");
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->SendJson(Message("resume-1")).ok());
    std::optional<json::object> start = ReadUntil(*client, "stream_start");
    ASSERT_TRUE(start.has_value());
    message_id = Str(*start, "messageId");
    ReadTokens(*client, received, /*stop_after_seq=*/2);
  }  // The socket drops without a close frame.

  std::unique_ptr<WsClient> other = Connect(*edge_b_address_, "resume-user");
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(
      other
          ->SendJson(json::object{
              {"type", "resume"}, {"messageId", message_id}, {"lastSeq", received.last_seq}})
          .ok());
  absl::StatusOr<json::object> resumed = other->ReadJson();
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(Str(*resumed, "type"), "resumed");
  EXPECT_EQ(Str(*resumed, "messageId"), message_id);
  EXPECT_TRUE(resumed->at("recovered").as_bool());
  ReadTokens(*other, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete");
  EXPECT_FALSE(received.duplicate_or_gap);

  const persistence_pb::Message stored = Stored("resume-user", message_id);
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(received.text, stored.content());
  EXPECT_EQ(received.last_seq, stored.last_seq());
  EXPECT_EQ(Int(*received.end, "lastSeq"), stored.last_seq());
  // The text put together from two edges' frames proves itself whole.
  EXPECT_EQ(stored.sha256(), IndependentSha256(stored.content()));
  EXPECT_TRUE(VerifyReplyChecksum(received.text, *received.end).ok())
      << VerifyReplyChecksum(received.text, *received.end);

  // Every ended message in history carries its checksum too.
  ASSERT_TRUE(other
                  ->SendJson(json::object{{"type", "history"},
                                          {"conversationId", stored.conversation_id()}})
                  .ok());
  std::optional<json::object> history = ReadUntil(*other, "history");
  ASSERT_TRUE(history.has_value());
  const json::array& messages = history->at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);
  for (const json::value& message : messages) {
    EXPECT_EQ(Str(message.as_object(), "sha256"),
              IndependentSha256(Str(message.as_object(), "content")));
  }

  // Someone else's message, or one that does not exist, is not recovered.
  std::unique_ptr<WsClient> mallory = Connect(*edge_b_address_, "mallory");
  ASSERT_NE(mallory, nullptr);
  for (const std::string& id : {message_id, std::string("no-such-message")}) {
    ASSERT_TRUE(mallory->SendJson(json::object{{"type", "resume"}, {"messageId", id}}).ok());
    absl::StatusOr<json::object> refused = mallory->ReadJson();
    ASSERT_TRUE(refused.ok());
    EXPECT_EQ(Str(*refused, "type"), "resumed");
    EXPECT_FALSE(refused->at("recovered").as_bool()) << id;
  }
}

TEST_F(EdgeStreamTest, AnEdgeKilledMidReplyLeavesAResumeTheAbandonedEndWithTheStoredText) {
  std::unique_ptr<ChildProcess> doomed = StartEdge(*inference_address_);
  const std::string doomed_address = doomed->WaitForListening();
  std::unique_ptr<WsClient> client = Connect(doomed_address, "abandon-user");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendJson(Message("abandon-1")).ok());
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  const std::string message_id = Str(*start, "messageId");
  Received received;
  ReadTokens(*client, received, /*stop_after_seq=*/2);
  doomed->Signal(SIGKILL);
  doomed->Wait();

  // A resume on a live edge follows the reply until persistence ends it for its lost writer.
  std::unique_ptr<WsClient> other = Connect(*edge_b_address_, "abandon-user");
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(
      other
          ->SendJson(json::object{
              {"type", "resume"}, {"messageId", message_id}, {"lastSeq", received.last_seq}})
          .ok());
  absl::StatusOr<json::object> resumed = other->ReadJson();
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(Str(*resumed, "type"), "resumed");
  EXPECT_TRUE(resumed->at("recovered").as_bool());
  ReadTokens(*other, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_interrupted");
  EXPECT_EQ(Str(*received.end, "error"), "reply_abandoned");
  EXPECT_FALSE(received.duplicate_or_gap);

  const persistence_pb::Message stored = Stored("abandon-user", message_id);
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(stored.finish_reason(), "lease_expired");
  EXPECT_EQ(received.text, stored.content());
  EXPECT_EQ(Int(*received.end, "lastSeq"), stored.last_seq());
  EXPECT_EQ(stored.sha256(), IndependentSha256(stored.content()));
}

TEST_F(EdgeStreamTest, ARepeatedMessageIdAnswersTheExistingReply) {
  std::unique_ptr<WsClient> client = Connect(*edge_a_address_, "repeat-user");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendJson(Message("repeat-1")).ok());
  std::optional<json::object> ack = ReadUntil(*client, "ack");
  ASSERT_TRUE(ack.has_value());
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  Received first;
  ReadTokens(*client, first);
  ASSERT_TRUE(first.end.has_value());
  EXPECT_EQ(Str(*first.end, "type"), "stream_complete");
  EXPECT_TRUE(VerifyReplyChecksum(first.text, *first.end).ok())
      << VerifyReplyChecksum(first.text, *first.end);

  // The same id again, on another edge: same ack, same reply, nothing generated twice.
  std::unique_ptr<WsClient> again = Connect(*edge_b_address_, "repeat-user");
  ASSERT_NE(again, nullptr);
  json::object repeat = Message("repeat-1");
  repeat["conversationId"] = Str(*ack, "conversationId");
  ASSERT_TRUE(again->SendJson(repeat).ok());
  std::optional<json::object> second_ack = ReadUntil(*again, "ack");
  ASSERT_TRUE(second_ack.has_value());
  EXPECT_EQ(Str(*second_ack, "messageId"), Str(*ack, "messageId"));
  std::optional<json::object> second_start = ReadUntil(*again, "stream_start");
  ASSERT_TRUE(second_start.has_value());
  EXPECT_EQ(Str(*second_start, "messageId"), Str(*start, "messageId"));
  Received second;
  ReadTokens(*again, second);
  ASSERT_TRUE(second.end.has_value());
  EXPECT_EQ(Str(*second.end, "type"), "stream_complete");
  EXPECT_EQ(second.text, first.text);
  EXPECT_EQ(second.last_seq, first.last_seq);
  // Replayed from storage, the same checksum.
  EXPECT_EQ(Str(*second.end, "sha256"), Str(*first.end, "sha256"));
  EXPECT_TRUE(VerifyReplyChecksum(second.text, *second.end).ok());

  auto stub = persistence_pb::ConversationService::NewStub(
      grpc::CreateChannel(*persistence_address_, grpc::InsecureChannelCredentials()));
  persistence_pb::ListMessagesRequest request;
  request.set_user_id("repeat-user");
  request.set_conversation_id(Str(*ack, "conversationId"));
  persistence_pb::ListMessagesResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->ListMessages(&context, request, &response).ok());
  EXPECT_EQ(response.messages_size(), 2);
}

TEST_F(EdgeStreamTest, InferenceDyingMidReplyIsAnInterruptionAndThePartIsStored) {
  std::unique_ptr<ChildProcess> inference = StartInference();
  ASSERT_NE(inference, nullptr);
  std::unique_ptr<ChildProcess> edge = StartEdge(inference->WaitForListening());
  ASSERT_NE(edge, nullptr);
  std::unique_ptr<WsClient> client = Connect(edge->WaitForListening(), "interrupted-user");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendJson(Message("interrupted-1")).ok());
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  Received received;
  ReadTokens(*client, received, /*stop_after_seq=*/2);
  inference->Signal(SIGKILL);
  ReadTokens(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_interrupted");
  EXPECT_EQ(Str(*received.end, "error"), "inference_unavailable");
  EXPECT_EQ(Int(*received.end, "lastSeq"), received.last_seq);
  EXPECT_EQ(Str(*received.end, "partialResponse"), received.text);

  const persistence_pb::Message stored = Stored("interrupted-user", Str(*start, "messageId"));
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(stored.content(), received.text);
  EXPECT_EQ(stored.sha256(), IndependentSha256(stored.content()));
  EXPECT_TRUE(VerifyReplyChecksum(received.text, *received.end).ok())
      << VerifyReplyChecksum(received.text, *received.end);
  // The socket stays open.
  ASSERT_TRUE(client->SendJson(json::object{{"type", "ping"}}).ok());
  EXPECT_TRUE(ReadUntil(*client, "pong").has_value());
}

TEST_F(EdgeStreamTest, WithInferenceDownEachTurnEndsInterruptedAndIsStoredSo) {
  std::unique_ptr<ChildProcess> inference = StartInference();
  ASSERT_NE(inference, nullptr);
  std::unique_ptr<ChildProcess> edge = StartEdge(inference->WaitForListening());
  ASSERT_NE(edge, nullptr);
  const std::string edge_address = edge->WaitForListening();
  std::unique_ptr<WsClient> client = Connect(edge_address, "inference-down-user");
  ASSERT_NE(client, nullptr);
  // A first reply while inference is up, so the edge knows its models; then inference dies.
  ASSERT_TRUE(client->SendJson(Message("down-0")).ok());
  ASSERT_TRUE(ReadUntil(*client, "stream_start").has_value());
  Received first;
  ReadTokens(*client, first, /*stop_after_seq=*/1);
  inference->Signal(SIGKILL);
  inference->Wait();
  ReadTokens(*client, first);
  ASSERT_TRUE(first.end.has_value());

  // gRPC's own error text (far longer than a stored finish reason may be) must not turn a
  // fault of the model service into one of storage, on any turn.
  for (int turn = 1; turn <= 3; ++turn) {
    ASSERT_TRUE(client->SendJson(Message(absl::StrCat("down-", turn))).ok());
    std::optional<json::object> start;
    while (!start.has_value()) {
      absl::StatusOr<json::object> frame = client->ReadJson();
      ASSERT_TRUE(frame.ok()) << "turn " << turn << ": " << frame.status();
      ASSERT_NE(Str(*frame, "type"), "error") << "turn " << turn << ": " << json::serialize(*frame);
      if (Str(*frame, "type") == "stream_start") {
        start = *frame;
      }
    }
    Received received;
    ReadTokens(*client, received);
    ASSERT_TRUE(received.end.has_value()) << "turn " << turn;
    EXPECT_EQ(Str(*received.end, "type"), "stream_interrupted") << "turn " << turn;
    EXPECT_EQ(Str(*received.end, "error"), "inference_unavailable") << "turn " << turn;
    EXPECT_EQ(Str(*received.end, "partialResponse"), "") << "turn " << turn;

    const persistence_pb::Message stored = Stored("inference-down-user", Str(*start, "messageId"));
    EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_INTERRUPTED) << "turn " << turn;
    EXPECT_EQ(stored.finish_reason(), "inference_unavailable") << "turn " << turn;
    EXPECT_EQ(stored.content(), "") << "turn " << turn;
  }

  // The Chat Completions API on the same edge says so in its own terms: 502 inference_unavailable.
  absl::StatusOr<testing::HttpResponse> completion = testing::HttpRequest(
      edge_address, "POST", "/v1/chat/completions?userId=inference-down-user",
      json::serialize(json::object{
          {"messages", json::array{json::object{{"role", "user"}, {"content", "Still there?"}}}}}),
      {{"Content-Type", "application/json"}});
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->status, 502) << completion->body;
  EXPECT_EQ(Str(json::parse(completion->body).at("error").as_object(), "code"),
            "inference_unavailable")
      << completion->body;
}

TEST_F(EdgeStreamTest, SigtermDuringAReplyLosesNothing) {
  std::unique_ptr<ChildProcess> edge = StartEdge(*inference_address_);
  ASSERT_NE(edge, nullptr);
  std::unique_ptr<WsClient> client = Connect(edge->WaitForListening(), "drain-user");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendJson(Message("drain-1")).ok());
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  Received received;
  ReadTokens(*client, received, /*stop_after_seq=*/2);

  // The running reply gets the drain grace period: it completes on this socket, then the
  // socket closes with 1001 and the process exits cleanly.
  edge->Signal(SIGTERM);
  ReadTokens(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete");
  EXPECT_FALSE(received.duplicate_or_gap);
  EXPECT_FALSE(client->Read().ok());
  EXPECT_EQ(client->close_code(), 1001);
  EXPECT_EQ(edge->Wait(), 0);

  const persistence_pb::Message stored = Stored("drain-user", Str(*start, "messageId"));
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.content(), received.text);
  EXPECT_EQ(stored.last_seq(), received.last_seq);
}

TEST_F(EdgeStreamTest, HeartbeatsWhileTheModelThinks) {
  std::unique_ptr<ChildProcess> inference = ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
       "--sim_ttft_ms=1500", "--sim_tokens_per_second=0", "--sim_max_tokens=5"});
  ASSERT_NE(inference, nullptr);
  std::unique_ptr<ChildProcess> edge = ChildProcess::Start(
      "parley-edge",
      {"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference->WaitForListening()),
       absl::StrCat("--persistence=", *persistence_address_), "--allow_anonymous",
       "--heartbeat_interval_ms=100"});
  ASSERT_NE(edge, nullptr);
  std::unique_ptr<WsClient> client = Connect(edge->WaitForListening(), "heartbeat-user");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendJson(Message("heartbeat-1")).ok());
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  // Before the first token: heartbeats naming the reply; after it: none.
  int heartbeats = 0;
  bool tokens = false;
  while (true) {
    absl::StatusOr<json::object> frame = client->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::string type = Str(*frame, "type");
    if (type == "heartbeat") {
      EXPECT_FALSE(tokens) << "heartbeat after the first token";
      EXPECT_EQ(Str(*frame, "messageId"), Str(*start, "messageId"));
      ++heartbeats;
    } else if (type == "stream_token") {
      tokens = true;
    } else if (type == "stream_complete") {
      break;
    }
  }
  EXPECT_GT(heartbeats, 0);
  EXPECT_TRUE(tokens);
}

}  // namespace
}  // namespace parley
