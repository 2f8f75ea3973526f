// A backend that dies, restarts, hangs or drains under a live edge, with the real binaries: what
// the client sees and what persistence stores, checked byte for byte.
#include <signal.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
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
using ::parley::testing::HttpGet;
using ::parley::testing::IndependentSha256;
using ::parley::testing::Int;
using ::parley::testing::ReadUntil;
using ::parley::testing::Str;
using ::parley::testing::VerifyReplyChecksum;
using ::parley::testing::WsClient;

// Long enough for a restarted backend to come up on a loaded machine; the default is 5 s.
constexpr char kRecoveryTimeout[] = "--backend_ready_timeout_ms=30000";

// One reply as its client saw it.
struct Received {
  std::string message_id;
  std::string text;
  int64_t last_seq = 0;
  bool out_of_order = false;
  // stream_complete / stream_cancelled / stream_interrupted, or an error ending the turn.
  std::optional<json::object> end;
};

// Three processes whose addresses stay the same when one is restarted.
class BackendFaultTest : public ::testing::Test {
 protected:
  // Where persistence keeps its data: a fresh SQLite file.
  virtual std::string StoreSpec() { return absl::StrCat("sqlite:", data_dir_, "/parley.db"); }

  void SetUp() override {
    data_dir_ = testing::MakeTempDir();
    StartPersistence(testing::RestartableListenAddress());
    ASSERT_FALSE(persistence_address_.empty());
    StartInference(testing::RestartableListenAddress());
    ASSERT_FALSE(inference_address_.empty());
  }

  void StartPersistence(const std::string& listen,
                        const std::vector<std::string>& extra_flags = {}) {
    std::vector<std::string> flags = {absl::StrCat("--listen=", listen),
                                      "--metrics_listen=127.0.0.1:0",
                                      absl::StrCat("--store=", StoreSpec()),
                                      // A reply left streaming while its writer reconnects must
                                      // not lapse meanwhile, however slow the machine.
                                      "--stream_lease_ms=60000"};
    flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
    persistence_ = ChildProcess::Start("parley-persistence", flags);
    ASSERT_NE(persistence_, nullptr);
    persistence_address_ = persistence_->WaitForListening();
  }

  // Paced so that a test can act in the middle of a reply: `tokens` tokens at 20 a second.
  void StartInference(const std::string& listen, int tokens = 60,
                      const std::vector<std::string>& extra_flags = {}) {
    std::vector<std::string> flags = {absl::StrCat("--listen=", listen),
                                      "--metrics_listen=127.0.0.1:0",
                                      "--engine=simulated",
                                      "--sim_ttft_ms=1",
                                      "--sim_tokens_per_second=20",
                                      absl::StrCat("--sim_max_tokens=", tokens)};
    flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
    inference_ = ChildProcess::Start("parley-inference", flags);
    ASSERT_NE(inference_, nullptr);
    inference_address_ = inference_->WaitForListening();
  }

  void StartEdge(const std::vector<std::string>& extra_flags = {}) {
    std::vector<std::string> flags = {
        "--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address_),
        absl::StrCat("--persistence=", persistence_address_), "--allow_anonymous"};
    flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
    edge_ = ChildProcess::Start("parley-edge", flags);
    ASSERT_NE(edge_, nullptr);
    edge_address_ = edge_->WaitForListening();
    ASSERT_FALSE(edge_address_.empty());
  }

  static void Stop(ChildProcess& process) {
    ASSERT_TRUE(process.Stop()) << "the process did not stop";
  }

  // Kills persistence and starts it again on the same address and database.
  void RestartPersistence(int signal) {
    persistence_->Signal(signal);
    persistence_->Wait();
    const std::string address = persistence_address_;
    StartPersistence(address);
    ASSERT_EQ(persistence_address_, address);
  }

  std::unique_ptr<WsClient> Connect(const std::string& user) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(edge_address_, absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static json::object Message(const std::string& id) {
    return json::object{{"type", "message"}, {"id", id}, {"content", "Tell me a long story."}};
  }

  // Sends a message and reads its reply up to `stop_after_seq` (0: to its end, or to the error
  // that ends the turn).
  static void Send(WsClient& client, const std::string& id, Received& received,
                   int64_t stop_after_seq = 0) {
    ASSERT_TRUE(client.SendJson(Message(id)).ok());
    ReadReply(client, received, stop_after_seq);
  }

  static void ReadReply(WsClient& client, Received& received, int64_t stop_after_seq = 0) {
    while (stop_after_seq == 0 || received.last_seq < stop_after_seq) {
      absl::StatusOr<json::object> frame = client.ReadJson();
      if (!frame.ok()) {
        ADD_FAILURE() << "the reply ended without an end frame: " << frame.status();
        return;
      }
      const std::string type = Str(*frame, "type");
      if (type == "ack" || type == "heartbeat" || type == "stream_reasoning") {
        continue;
      }
      if (type == "stream_start") {
        received.message_id = Str(*frame, "messageId");
        continue;
      }
      if (type == "stream_token") {
        received.out_of_order = received.out_of_order || Int(*frame, "seq") <= received.last_seq;
        received.last_seq = Int(*frame, "seq");
        received.text += Str(*frame, "token");
        continue;
      }
      if (type == "stream_complete" || type == "stream_cancelled" || type == "stream_interrupted" ||
          type == "error") {
        received.end = *frame;
        return;
      }
      ADD_FAILURE() << "unexpected frame: " << json::serialize(*frame);
      return;
    }
  }

  // A whole reply that must complete.
  static void ExpectCompleteTurn(WsClient& client, const std::string& id) {
    Received received;
    Send(client, id, received);
    ASSERT_TRUE(received.end.has_value());
    EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
    EXPECT_FALSE(received.text.empty());
  }

  persistence_pb::Message Stored(const std::string& user, const std::string& message_id) {
    auto stub = persistence_pb::ConversationService::NewStub(
        grpc::CreateChannel(persistence_address_, grpc::InsecureChannelCredentials()));
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    persistence_pb::GetMessageResponse response;
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    const grpc::Status status = stub->GetMessage(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  }

  // The stored reply holds exactly what the client saw, and proves it with its checksum.
  void ExpectStoredAsSeen(const std::string& user, const Received& received,
                          persistence_pb::MessageStatus status) {
    const persistence_pb::Message stored = Stored(user, received.message_id);
    EXPECT_EQ(stored.status(), status);
    EXPECT_EQ(stored.content(), received.text);
    EXPECT_EQ(stored.last_seq(), received.last_seq);
    EXPECT_EQ(stored.sha256(), IndependentSha256(stored.content()));
    ASSERT_TRUE(received.end.has_value());
    EXPECT_TRUE(VerifyReplyChecksum(received.text, *received.end).ok())
        << VerifyReplyChecksum(received.text, *received.end);
  }

  std::string data_dir_;
  std::unique_ptr<ChildProcess> persistence_;
  std::unique_ptr<ChildProcess> inference_;
  std::unique_ptr<ChildProcess> edge_;
  std::string persistence_address_;
  std::string inference_address_;
  std::string edge_address_;
};

TEST_F(BackendFaultTest, PersistenceKilledAndRestartedIsInvisibleToTheNextTurn) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("restart-user");
  ASSERT_NE(client, nullptr);
  ExpectCompleteTurn(*client, "before");

  RestartPersistence(SIGKILL);
  // Sent at once: the edge's channel is still reconnecting, and the turn waits for it.
  ExpectCompleteTurn(*client, "after");
}

TEST_F(BackendFaultTest, InferenceKilledAndRestartedIsInvisibleToTheNextTurn) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("restart-user");
  ASSERT_NE(client, nullptr);
  ExpectCompleteTurn(*client, "before");

  inference_->Signal(SIGKILL);
  inference_->Wait();
  const std::string address = inference_address_;
  StartInference(address);
  ASSERT_EQ(inference_address_, address);
  ExpectCompleteTurn(*client, "after");
}

TEST_F(BackendFaultTest, PersistenceKilledMidReplyStoresEveryByteTheClientSaw) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("kill-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "kill-1", received, /*stop_after_seq=*/3);
  ASSERT_FALSE(received.end.has_value());

  // The reply goes on while persistence is away; what it had not acknowledged is sent again to
  // the new process.
  RestartPersistence(SIGKILL);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  EXPECT_EQ(Int(*received.end, "lastSeq"), received.last_seq);
  EXPECT_FALSE(received.out_of_order);
  ExpectStoredAsSeen("kill-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_F(BackendFaultTest, AResumeFollowsAReplyAcrossAPersistenceRestart) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("follow-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "follow-1", received, /*stop_after_seq=*/3);
  // A second device follows the reply from persistence (a watch).
  std::unique_ptr<WsClient> follower = Connect("follow-user");
  ASSERT_NE(follower, nullptr);
  ASSERT_TRUE(follower
                  ->SendJson(json::object{
                      {"type", "resume"}, {"messageId", received.message_id}, {"lastSeq", 0}})
                  .ok());
  std::optional<json::object> resumed = ReadUntil(*follower, "resumed");
  ASSERT_TRUE(resumed.has_value());
  EXPECT_TRUE(resumed->at("recovered").as_bool());
  Received followed;
  followed.message_id = received.message_id;
  ReadReply(*follower, followed, /*stop_after_seq=*/1);

  RestartPersistence(SIGKILL);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  ReadReply(*follower, followed);
  ASSERT_TRUE(followed.end.has_value());
  EXPECT_EQ(Str(*followed.end, "type"), "stream_complete") << json::serialize(*followed.end);
  EXPECT_EQ(followed.text, received.text);
  EXPECT_FALSE(followed.out_of_order);
  ExpectStoredAsSeen("follow-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_F(BackendFaultTest, PersistenceGoneMidReplyPastTheTimeoutTellsTheClientTheReplyIsNotStored) {
  StartEdge({"--backend_ready_timeout_ms=500"});
  std::unique_ptr<WsClient> client = Connect("gone-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "gone-1", received, /*stop_after_seq=*/3);
  persistence_->Signal(SIGKILL);
  persistence_->Wait();
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "error") << json::serialize(*received.end);
  EXPECT_EQ(Str(*received.end, "code"), "storage_unavailable");
  EXPECT_EQ(Str(*received.end, "id"), "gone-1");
  EXPECT_TRUE(absl::StrContains(Str(*received.end, "message"), "persistence"))
      << Str(*received.end, "message");

  // The edge still serves the connection; what is stored is a prefix of what the client saw.
  ASSERT_TRUE(client->SendJson(json::object{{"type", "ping"}}).ok());
  EXPECT_TRUE(ReadUntil(*client, "pong").has_value());
  StartPersistence(persistence_address_);
  const persistence_pb::Message stored = Stored("gone-user", received.message_id);
  EXPECT_TRUE(absl::StartsWith(received.text, stored.content()));
  EXPECT_LE(stored.last_seq(), received.last_seq);
}

TEST_F(BackendFaultTest, BackendsDownWhenTheEdgeStartsAreClearErrorsUntilTheyCome) {
  // Both backends stop; the edge starts on their addresses anyway.
  persistence_->Signal(SIGTERM);
  ASSERT_EQ(persistence_->Wait(), 0);
  inference_->Signal(SIGTERM);
  ASSERT_EQ(inference_->Wait(), 0);
  // Longer than the reconnect back-off (at most about a second), so a backend that has just
  // started is waited for.
  StartEdge({"--backend_ready_timeout_ms=3000"});

  absl::StatusOr<testing::HttpResponse> readyz = HttpGet(edge_address_, "/readyz");
  ASSERT_TRUE(readyz.ok()) << readyz.status();
  EXPECT_EQ(readyz->status, 503);
  EXPECT_TRUE(absl::StrContains(readyz->body, "\"persistence\":false")) << readyz->body;
  EXPECT_TRUE(absl::StrContains(readyz->body, "\"inference\":false")) << readyz->body;

  std::unique_ptr<WsClient> client = Connect("early-user");
  ASSERT_NE(client, nullptr);
  Received refused;
  Send(*client, "early-1", refused);
  ASSERT_TRUE(refused.end.has_value());
  EXPECT_EQ(Str(*refused.end, "type"), "error");
  EXPECT_EQ(Str(*refused.end, "code"), "storage_unavailable");
  EXPECT_EQ(Str(*refused.end, "message"),
            "cannot store the message: persistence is not reachable: not connected within 3000 ms");
  absl::StatusOr<testing::HttpResponse> list = HttpGet(edge_address_, "/v1/conversations?userId=u");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->status, 503);

  // Persistence alone: the message is stored, the model is unreachable.
  StartPersistence(persistence_address_);
  Received no_model;
  Send(*client, "early-2", no_model);
  ASSERT_TRUE(no_model.end.has_value());
  EXPECT_EQ(Str(*no_model.end, "code"), "inference_unavailable") << json::serialize(*no_model.end);

  // Both: the same connection is served, and the edge is ready.
  StartInference(inference_address_);
  ExpectCompleteTurn(*client, "early-3");
  readyz = HttpGet(edge_address_, "/readyz");
  ASSERT_TRUE(readyz.ok()) << readyz.status();
  EXPECT_EQ(readyz->status, 200) << readyz->body;
}

TEST_F(BackendFaultTest, InferenceSigtermMidReplyLetsTheReplyFinish) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("drain-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "drain-1", received, /*stop_after_seq=*/3);
  // The rest of the reply (under 3 s) fits in inference's drain grace (5 s).
  inference_->Signal(SIGTERM);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  EXPECT_EQ(inference_->Wait(), 0);
  ExpectStoredAsSeen("drain-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_F(BackendFaultTest, InferenceDrainGraceExpiringInterruptsTheReplyWithTheStoredPart) {
  inference_->Signal(SIGKILL);
  inference_->Wait();
  StartInference("127.0.0.1:0", /*tokens=*/400, {"--shutdown_grace_ms=300"});
  StartEdge();
  std::unique_ptr<WsClient> client = Connect("grace-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "grace-1", received, /*stop_after_seq=*/3);
  inference_->Signal(SIGTERM);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_interrupted") << json::serialize(*received.end);
  EXPECT_EQ(Str(*received.end, "error"), "inference_unavailable");
  EXPECT_EQ(Int(*received.end, "lastSeq"), received.last_seq);
  EXPECT_EQ(Str(*received.end, "partialResponse"), received.text);
  EXPECT_EQ(inference_->Wait(), 0);
  ExpectStoredAsSeen("grace-user", received, persistence_pb::MESSAGE_STATUS_INTERRUPTED);
}

TEST_F(BackendFaultTest, PersistenceSigtermMidReplyLosesNothing) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("pdrain-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "pdrain-1", received, /*stop_after_seq=*/3);
  // The rest of the reply (under 3 s) fits in persistence's drain (5 s): its stream finishes.
  persistence_->Signal(SIGTERM);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  EXPECT_EQ(persistence_->Wait(), 0);
  StartPersistence(persistence_address_);
  ExpectStoredAsSeen("pdrain-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_F(BackendFaultTest, PersistenceDrainGraceExpiringMidReplyResendsToItsSuccessor) {
  inference_->Signal(SIGKILL);
  inference_->Wait();
  // 10 s of reply: longer than persistence's drain (5 s).
  StartInference("127.0.0.1:0", /*tokens=*/200);
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("pgrace-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "pgrace-1", received, /*stop_after_seq=*/3);
  persistence_->Signal(SIGTERM);
  EXPECT_EQ(persistence_->Wait(), 0);
  // Its stream was cut when the drain ran out; the next process gets the rest.
  StartPersistence(persistence_address_);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  ExpectStoredAsSeen("pgrace-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_F(BackendFaultTest, PersistenceHungIsABoundedClearErrorWhileOthersAreServed) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("hang-user");
  ASSERT_NE(client, nullptr);
  ExpectCompleteTurn(*client, "hang-0");

  Stop(*persistence_);
  ASSERT_TRUE(client->SendJson(Message("hang-1")).ok());
  // While that message waits, the edge serves everyone else.
  std::unique_ptr<WsClient> other = Connect("other-user");
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->SendJson(json::object{{"type", "ping"}}).ok());
  EXPECT_TRUE(ReadUntil(*other, "pong").has_value());
  absl::StatusOr<testing::HttpResponse> healthz = HttpGet(edge_address_, "/healthz");
  ASSERT_TRUE(healthz.ok()) << healthz.status();
  EXPECT_EQ(healthz->status, 200);

  Received refused;
  ReadReply(*client, refused);
  ASSERT_TRUE(refused.end.has_value());
  EXPECT_EQ(Str(*refused.end, "type"), "error");
  EXPECT_EQ(Str(*refused.end, "code"), "storage_unavailable");
  EXPECT_EQ(Str(*refused.end, "message"),
            "cannot store the message: persistence did not answer within 10000 ms");

  persistence_->Signal(SIGCONT);
  ExpectCompleteTurn(*client, "hang-2");
}

TEST_F(BackendFaultTest, InferenceHungMidReplyIsInterruptedWithTheStoredPart) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("stop-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "stop-1", received, /*stop_after_seq=*/3);
  // The edge's keepalive ping goes unanswered and ends the connection, and with it the reply.
  Stop(*inference_);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_interrupted") << json::serialize(*received.end);
  EXPECT_EQ(Str(*received.end, "error"), "inference_unavailable");
  EXPECT_EQ(Str(*received.end, "partialResponse"), received.text);
  ExpectStoredAsSeen("stop-user", received, persistence_pb::MESSAGE_STATUS_INTERRUPTED);

  inference_->Signal(SIGCONT);
  ExpectCompleteTurn(*client, "stop-2");
}

TEST_F(BackendFaultTest, PersistenceHungMidReplyTellsTheClientTheReplyIsNotStoredAndRecovers) {
  StartEdge({"--backend_ready_timeout_ms=2000"});
  std::unique_ptr<WsClient> client = Connect("pstop-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "pstop-1", received, /*stop_after_seq=*/3);
  // Nothing is acknowledged for the readiness timeout: the stream counts as broken, is opened
  // again (on the same connection, which the stopped process still holds) and, unanswered
  // again, given up on.
  Stop(*persistence_);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "error") << json::serialize(*received.end);
  EXPECT_EQ(Str(*received.end, "code"), "storage_unavailable");
  EXPECT_EQ(Str(*received.end, "id"), "pstop-1");

  persistence_->Signal(SIGCONT);
  const persistence_pb::Message stored = Stored("pstop-user", received.message_id);
  EXPECT_TRUE(absl::StartsWith(received.text, stored.content()));
  ExpectCompleteTurn(*client, "pstop-2");
}

TEST_F(BackendFaultTest, PersistenceHungPastTheAckTimeoutGetsTheReplyAgainWhenItWakes) {
  StartEdge({"--backend_ready_timeout_ms=5000"});
  std::unique_ptr<WsClient> client = Connect("nap-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "nap-1", received, /*stop_after_seq=*/3);
  // Stopped for longer than the edge waits for an acknowledgement: the stream counts as broken
  // and is opened again, and the process wakes within the second wait, takes the resent deltas
  // and stores the whole reply.
  Stop(*persistence_);
  absl::SleepFor(absl::Seconds(6));
  persistence_->Signal(SIGCONT);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  EXPECT_FALSE(received.out_of_order);
  ExpectStoredAsSeen("nap-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_F(BackendFaultTest, PersistenceStalledMidReplyHoldsTheReplyAtTheEdgesBoundUntilItCatchesUp) {
  // Faster than persistence can ever be stalled for, and many more deltas than the bound.
  inference_->Signal(SIGKILL);
  inference_->Wait();
  StartInference("127.0.0.1:0", /*tokens=*/400, {"--sim_tokens_per_second=1000"});
  constexpr int kWindow = 32;
  StartEdge({kRecoveryTimeout, absl::StrCat("--persistence_max_unacked_deltas=", kWindow)});
  std::unique_ptr<WsClient> client = Connect("stall-user");
  ASSERT_NE(client, nullptr);
  ExpectCompleteTurn(*client, "stall-0");

  // The reply is stored as streaming and its first token is still to come when persistence
  // stops: none of its deltas can be acknowledged.
  Stop(*inference_);
  ASSERT_TRUE(client->SendJson(Message("stall-1")).ok());
  Received received;
  std::optional<json::object> start = ReadUntil(*client, "stream_start");
  ASSERT_TRUE(start.has_value());
  received.message_id = Str(*start, "messageId");
  Stop(*persistence_);
  inference_->Signal(SIGCONT);

  // The edge takes the window's worth from inference and then stops pulling, however fast the
  // engine is: nothing after it reaches the client, which would see it before its pong.
  ReadReply(*client, received, /*stop_after_seq=*/kWindow);
  EXPECT_EQ(received.last_seq, kWindow);
  ASSERT_TRUE(client->SendJson(json::object{{"type", "ping"}}).ok());
  while (true) {
    absl::StatusOr<json::object> frame = client->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (Str(*frame, "type") == "pong") {
      break;
    }
    ASSERT_NE(Str(*frame, "type"), "stream_token")
        << "a token past the persistence window: " << json::serialize(*frame);
  }

  // Acknowledgements make room again and the reply runs to its end, stored byte for byte.
  persistence_->Signal(SIGCONT);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  EXPECT_GT(received.last_seq, kWindow);
  EXPECT_FALSE(received.out_of_order);
  ExpectStoredAsSeen("stall-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);
}

// The same stack on the PostgreSQL cluster of tests/persistence/with_postgres.sh, which also
// gives the command that restarts it.
class PostgresBackendFaultTest : public BackendFaultTest {
 protected:
  std::string StoreSpec() override {
    const char* url = std::getenv("PARLEY_TEST_POSTGRES_URL");
    return url != nullptr ? url : "";
  }

  void SetUp() override {
    ASSERT_NE(std::getenv("PARLEY_TEST_POSTGRES_URL"), nullptr) << "run through with_postgres.sh";
    ASSERT_NE(std::getenv("PARLEY_TEST_POSTGRES_RESTART"), nullptr);
    BackendFaultTest::SetUp();
  }
};

TEST_F(PostgresBackendFaultTest, ADatabaseRestartMidReplyLosesNothingAndAResumeFollowsIt) {
  StartEdge({kRecoveryTimeout});
  std::unique_ptr<WsClient> client = Connect("pg-user");
  ASSERT_NE(client, nullptr);
  Received received;
  Send(*client, "pg-1", received, /*stop_after_seq=*/3);
  // A second device follows the same reply through a watch.
  std::unique_ptr<WsClient> follower = Connect("pg-user");
  ASSERT_NE(follower, nullptr);
  ASSERT_TRUE(follower
                  ->SendJson(json::object{
                      {"type", "resume"}, {"messageId", received.message_id}, {"lastSeq", 0}})
                  .ok());
  std::optional<json::object> resumed = ReadUntil(*follower, "resumed");
  ASSERT_TRUE(resumed.has_value());
  EXPECT_TRUE(resumed->at("recovered").as_bool());

  ASSERT_EQ(std::system(std::getenv("PARLEY_TEST_POSTGRES_RESTART")), 0);
  ReadReply(*client, received);
  ASSERT_TRUE(received.end.has_value());
  EXPECT_EQ(Str(*received.end, "type"), "stream_complete") << json::serialize(*received.end);
  ExpectStoredAsSeen("pg-user", received, persistence_pb::MESSAGE_STATUS_COMPLETE);

  Received followed;
  followed.message_id = received.message_id;
  ReadReply(*follower, followed);
  ASSERT_TRUE(followed.end.has_value());
  EXPECT_EQ(Str(*followed.end, "type"), "stream_complete") << json::serialize(*followed.end);
  EXPECT_EQ(followed.text, received.text);
  EXPECT_FALSE(followed.out_of_order);

  // The service goes on after the restart.
  ExpectCompleteTurn(*client, "pg-2");
}

}  // namespace
}  // namespace parley
