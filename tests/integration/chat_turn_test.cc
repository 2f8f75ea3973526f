// Starts the three real binaries and drives chat turns over a real WebSocket,
// the way a browser would.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;
using ::parley::testing::HttpGet;
using ::parley::testing::HttpResponse;
using ::parley::testing::Int;
using ::parley::testing::ParleyStack;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// grpc.health.v1 Check on a completion queue of its own, so that nothing of the call is left on
// gRPC's threads when it returns (a callback call could still be tearing down there as the test
// process exits, which aborted it). The request is the empty message; SERVING is field 1 = 1.
bool Serving(const std::string& address) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::Slice empty;
  const grpc::ByteBuffer request(&empty, 1);
  grpc::CompletionQueue queue;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &queue);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, &status);
  void* tag = nullptr;
  bool ok = false;
  const bool finished = queue.Next(&tag, &ok) && tag == &status && ok;
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  std::vector<grpc::Slice> slices;
  if (!finished || !status.ok() || !response.Dump(&slices).ok()) {
    return false;
  }
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes == std::string("\x08\x01", 2);
}

// What one turn looked like from the client's side.
struct TurnResult {
  std::string conversation_id;
  std::string user_message_id;
  std::string assistant_message_id;
  std::string text;  // Every stream_token, concatenated.
  int64_t last_seq = 0;
};

class ChatTurnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // An unpaced engine: replies arrive as fast as the services can carry them.
    stack_ = ParleyStack::Start(StackOptions{
        .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=0", "--sim_max_tokens=24"},
        .edge_flags = {"--threads=2"},
    });
    ASSERT_NE(stack_, nullptr);
    persistence_address_ = stack_->persistence_address();
    inference_address_ = stack_->inference_address();
    edge_address_ = stack_->edge_address();
    // The edge serves its metrics on its one port.
    EXPECT_EQ(stack_->edge().WaitForListening("metrics_listen"), edge_address_);
  }

  std::unique_ptr<WsClient> Connect(const std::string& user) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(edge_address_, absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // What persistence stores of `user`'s conversation, asked directly over gRPC.
  grpc::Status ListStored(const std::string& user, const std::string& conversation_id,
                          persistence_pb::ListMessagesResponse* response) {
    auto stub = persistence_pb::ConversationService::NewStub(
        grpc::CreateChannel(persistence_address_, grpc::InsecureChannelCredentials()));
    persistence_pb::ListMessagesRequest request;
    request.set_user_id(user);
    request.set_conversation_id(conversation_id);
    grpc::ClientContext context;
    return stub->ListMessages(&context, request, response);
  }

  // Sends one message and reads its frames up to stream_complete, checking
  // their order and sequence numbers on the way.
  TurnResult RunTurn(WsClient& client, const std::string& id, const std::string& content,
                     const std::string& conversation_id) {
    TurnResult result;
    json::object message{{"type", "message"}, {"id", id}, {"content", content}};
    if (!conversation_id.empty()) {
      message["conversationId"] = conversation_id;
    }
    EXPECT_TRUE(client.SendJson(message).ok());

    absl::StatusOr<json::object> ack = client.ReadJson();
    if (!ack.ok() || Str(*ack, "type") != "ack") {
      ADD_FAILURE() << "expected ack, got "
                    << (ack.ok() ? json::serialize(*ack) : ack.status().ToString());
      return result;
    }
    EXPECT_EQ(Str(*ack, "id"), id);
    result.conversation_id = Str(*ack, "conversationId");
    result.user_message_id = Str(*ack, "messageId");
    EXPECT_FALSE(result.conversation_id.empty());
    EXPECT_FALSE(result.user_message_id.empty());
    if (!conversation_id.empty()) {
      EXPECT_EQ(result.conversation_id, conversation_id);
    }

    absl::StatusOr<json::object> start = client.ReadJson();
    if (!start.ok() || Str(*start, "type") != "stream_start") {
      ADD_FAILURE() << "expected stream_start, got "
                    << (start.ok() ? json::serialize(*start) : start.status().ToString());
      return result;
    }
    EXPECT_EQ(Str(*start, "conversationId"), result.conversation_id);
    result.assistant_message_id = Str(*start, "messageId");
    EXPECT_FALSE(result.assistant_message_id.empty());
    EXPECT_NE(result.assistant_message_id, result.user_message_id);
    EXPECT_FALSE(Str(*start, "model").empty());

    while (true) {
      absl::StatusOr<json::object> frame = client.ReadJson();
      if (!frame.ok()) {
        ADD_FAILURE() << "stream ended without stream_complete: " << frame.status();
        return result;
      }
      const std::string type = Str(*frame, "type");
      if (type == "stream_token") {
        EXPECT_EQ(Str(*frame, "messageId"), result.assistant_message_id);
        EXPECT_EQ(Int(*frame, "seq"), result.last_seq + 1) << "tokens out of order or with a gap";
        result.last_seq = Int(*frame, "seq");
        result.text += Str(*frame, "token");
        continue;
      }
      if (type == "stream_complete") {
        EXPECT_EQ(Str(*frame, "messageId"), result.assistant_message_id);
        EXPECT_EQ(Int(*frame, "lastSeq"), result.last_seq);
        EXPECT_FALSE(Str(*frame, "finishReason").empty());
        const json::value* usage = frame->if_contains("usage");
        EXPECT_TRUE(usage != nullptr && usage->is_object() &&
                    usage->as_object().contains("promptTokens") &&
                    usage->as_object().contains("completionTokens"))
            << json::serialize(*frame);
        break;
      }
      ADD_FAILURE() << "unexpected frame mid-stream: " << json::serialize(*frame);
      return result;
    }
    EXPECT_GT(result.last_seq, 0);
    EXPECT_FALSE(result.text.empty());
    return result;
  }

  void ExpectError(WsClient& client, const std::string& frame, const std::string& code) {
    ASSERT_TRUE(client.Send(frame).ok());
    absl::StatusOr<json::object> reply = client.ReadJson();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(Str(*reply, "type"), "error") << json::serialize(*reply);
    EXPECT_EQ(Str(*reply, "code"), code) << "for frame " << frame;
    EXPECT_FALSE(Str(*reply, "message").empty());
  }

  std::unique_ptr<ParleyStack> stack_;
  std::string persistence_address_;
  std::string inference_address_;
  std::string edge_address_;
};

TEST_F(ChatTurnTest, TwoTurnsStreamInOrderAndAreStored) {
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->subprotocol(), "parley.v1");

  const TurnResult first = RunTurn(*client, "client-1", "Hello there, who are you?", "");
  ASSERT_FALSE(first.conversation_id.empty());

  // Mistakes between turns are answered with errors and break nothing.
  ExpectError(*client, "{not json", "invalid_json");
  ExpectError(*client, R"({"type":"no_such_frame"})", "unknown_type");
  ExpectError(*client, R"({"type":"message","content":"no id"})", "invalid_frame");
  ASSERT_TRUE(client->Send(R"({"type":"ping"})").ok());
  absl::StatusOr<json::object> pong = client->ReadJson();
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(Str(*pong, "type"), "pong");

  const TurnResult second =
      RunTurn(*client, "client-2", "Tell me more about streaming.", first.conversation_id);
  EXPECT_EQ(second.conversation_id, first.conversation_id);

  // The history frame gives back the four messages in order.
  ASSERT_TRUE(
      client->SendJson({{"type", "history"}, {"conversationId", first.conversation_id}}).ok());
  absl::StatusOr<json::object> history = client->ReadJson();
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(Str(*history, "type"), "history") << json::serialize(*history);
  EXPECT_EQ(Str(*history, "conversationId"), first.conversation_id);
  const json::array& messages = history->at("messages").as_array();
  ASSERT_EQ(messages.size(), 4u) << json::serialize(*history);
  const std::vector<std::string> roles = {"user", "assistant", "user", "assistant"};
  const std::vector<std::string> ids = {first.user_message_id, first.assistant_message_id,
                                        second.user_message_id, second.assistant_message_id};
  const std::vector<std::string> contents = {"Hello there, who are you?", first.text,
                                             "Tell me more about streaming.", second.text};
  for (size_t i = 0; i < 4; ++i) {
    const json::object& message = messages[i].as_object();
    EXPECT_EQ(Str(message, "role"), roles[i]) << i;
    EXPECT_EQ(Str(message, "id"), ids[i]) << i;
    EXPECT_EQ(Str(message, "content"), contents[i]) << i;
    EXPECT_EQ(Str(message, "status"), "complete") << i;
  }

  // Persistence holds exactly what was streamed, for the user who sent it only.
  persistence_pb::ListMessagesResponse response;
  ASSERT_TRUE(ListStored("alice", first.conversation_id, &response).ok());
  ASSERT_EQ(response.messages_size(), 4);
  EXPECT_EQ(response.messages(1).content(), first.text);
  EXPECT_EQ(response.messages(1).last_seq(), first.last_seq);
  EXPECT_EQ(response.messages(1).status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(response.messages(3).content(), second.text);
  EXPECT_EQ(response.messages(3).last_seq(), second.last_seq);
  EXPECT_EQ(response.messages(3).parent_id(), second.user_message_id);
  EXPECT_EQ(ListStored("mallory", first.conversation_id, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Another user cannot read the conversation through the edge either.
  std::unique_ptr<WsClient> other = Connect("mallory");
  ASSERT_NE(other, nullptr);
  ExpectError(
      *other,
      json::serialize(json::object{{"type", "history"}, {"conversationId", first.conversation_id}}),
      "not_found");

  EXPECT_TRUE(Serving(persistence_address_));
  EXPECT_TRUE(Serving(inference_address_));

  absl::StatusOr<HttpResponse> metrics = HttpGet(edge_address_, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(absl::StrContains(
      metrics->body, "parley_edge_turns_total{dialect=\"native\",outcome=\"complete\"} 2"))
      << metrics->body;
  EXPECT_TRUE(
      absl::StrContains(metrics->body, absl::StrCat("parley_edge_tokens_total{dialect=\"native\"} ",
                                                    first.last_seq + second.last_seq)));
  EXPECT_TRUE(absl::StrContains(
      metrics->body, "parley_edge_frames_received_total{dialect=\"native\",type=\"invalid\"} 3"));
  EXPECT_TRUE(absl::StrContains(metrics->body, "parley_edge_grpc_client_handled_total{"));
}

// Once the edge knows inference's models, a turn's start takes one persistence call: the
// AppendMessage that stores the message also returns its branch and opens its reply.
TEST_F(ChatTurnTest, ATurnTakesOnePersistenceCallThatStoresListsOpensAndStreamsItsReply) {
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);
  const TurnResult first = RunTurn(*client, "one-call-1", "First things first.", "");
  const TurnResult second = RunTurn(*client, "one-call-2", "Second of all.", first.conversation_id);
  const int appends = stack_->PersistenceCallsStarted("AppendMessage");
  const int lists = stack_->PersistenceCallsStarted("ListMessages");
  const int streams = stack_->PersistenceCallsStarted("WriteMessageStream");
  // The first turn learns the models (one call at a time), the second takes one call.
  ASSERT_GT(appends, 0);
  const TurnResult third = RunTurn(*client, "one-call-3", "And third.", first.conversation_id);
  EXPECT_EQ(stack_->PersistenceCallsStarted("AppendMessage"), appends);
  EXPECT_EQ(stack_->PersistenceCallsStarted("ListMessages"), lists);
  EXPECT_EQ(stack_->PersistenceCallsStarted("WriteMessageStream"), streams + 1);

  // The reply answers its message, is keyed by it, and the model heard the whole branch.
  persistence_pb::ListMessagesResponse response;
  ASSERT_TRUE(ListStored("alice", first.conversation_id, &response).ok());
  ASSERT_EQ(response.messages_size(), 6);
  const persistence_pb::Message& reply = response.messages(5);
  EXPECT_EQ(reply.id(), third.assistant_message_id);
  EXPECT_EQ(reply.parent_id(), third.user_message_id);
  EXPECT_EQ(reply.client_message_id(), "reply:" + third.user_message_id);
  EXPECT_EQ(reply.content(), third.text);
  EXPECT_EQ(reply.status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(response.messages(4).id(), third.user_message_id);
  EXPECT_EQ(response.messages(4).parent_id(), second.assistant_message_id);

  // A resend of the third message answers with the reply it already has.
  ASSERT_TRUE(client
                  ->SendJson({{"type", "message"},
                              {"id", "one-call-3"},
                              {"content", "And third."},
                              {"conversationId", first.conversation_id}})
                  .ok());
  absl::StatusOr<json::object> ack = client->ReadJson();
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(Str(*ack, "type"), "ack");
  EXPECT_EQ(Str(*ack, "messageId"), third.user_message_id);
  absl::StatusOr<json::object> start = client->ReadJson();
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(Str(*start, "type"), "stream_start");
  EXPECT_EQ(Str(*start, "messageId"), third.assistant_message_id);
}

TEST_F(ChatTurnTest, TraceparentOnTheUpgradeFollowsTheTurnIntoEveryServicesLog) {
  constexpr char kTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge_address_, "/ws/chat?userId=tracy", {"parley.v1"},
                        {{"traceparent", absl::StrCat("00-", kTraceId, "-00f067aa0ba902b7-01")}});
  ASSERT_TRUE(client.ok()) << client.status();
  RunTurn(**client, "traced-1", "Follow me through the logs.", "");
  // Each service writes its line before answering, so these are there already
  // or right behind on the pipe.
  EXPECT_NE(stack_->edge().WaitForLine(kTraceId), "");
  EXPECT_NE(stack_->inference().WaitForLine(kTraceId), "");
  EXPECT_NE(stack_->persistence().WaitForLine(kTraceId), "");
}

TEST_F(ChatTurnTest, ServesHealthReadinessMetricsAndTheChatPage) {
  absl::StatusOr<HttpResponse> healthz = HttpGet(edge_address_, "/healthz");
  ASSERT_TRUE(healthz.ok()) << healthz.status();
  EXPECT_EQ(healthz->status, 200);

  absl::StatusOr<HttpResponse> readyz = HttpGet(edge_address_, "/readyz");
  ASSERT_TRUE(readyz.ok()) << readyz.status();
  EXPECT_EQ(readyz->status, 200) << readyz->body;

  absl::StatusOr<HttpResponse> metrics = HttpGet(edge_address_, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(absl::StrContains(metrics->body, "# HELP parley_edge_connections "));

  absl::StatusOr<HttpResponse> page = HttpGet(edge_address_, "/");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  EXPECT_TRUE(absl::StartsWith(page->content_type, "text/html"));
  EXPECT_TRUE(absl::StrContains(page->body, "/ws/chat"));
  EXPECT_TRUE(absl::StrContains(page->body, "crypto.randomUUID"));

  absl::StatusOr<HttpResponse> missing = HttpGet(edge_address_, "/no-such-page");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);

  // Without inference the edge is alive but not ready.
  stack_->inference().Signal(SIGTERM);
  EXPECT_EQ(stack_->inference().Wait(), 0);
  readyz = HttpGet(edge_address_, "/readyz");
  ASSERT_TRUE(readyz.ok()) << readyz.status();
  EXPECT_EQ(readyz->status, 503);
  healthz = HttpGet(edge_address_, "/healthz");
  ASSERT_TRUE(healthz.ok());
  EXPECT_EQ(healthz->status, 200);
}

TEST_F(ChatTurnTest, InferenceDownIsAnErrorAndTheSocketStaysOpen) {
  std::unique_ptr<WsClient> client = Connect("carol");
  ASSERT_NE(client, nullptr);
  stack_->inference().Signal(SIGTERM);
  ASSERT_EQ(stack_->inference().Wait(), 0);

  ASSERT_TRUE(
      client->SendJson({{"type", "message"}, {"id", "c-1"}, {"content", "anyone there?"}}).ok());
  absl::StatusOr<json::object> ack = client->ReadJson();
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(Str(*ack, "type"), "ack");
  // The turn ends with inference_unavailable, in one of the two ends docs/protocol.md gives: an
  // `error` for the message when the edge knows inference is gone before the reply opens, or
  // `stream_start` and then `stream_interrupted` when it learns so from the reply's own call (the
  // closed connection may not have reached the edge yet).
  absl::StatusOr<json::object> frame = client->ReadJson();
  ASSERT_TRUE(frame.ok()) << frame.status();
  if (Str(*frame, "type") == "stream_start") {
    const std::string reply_id = Str(*frame, "messageId");
    frame = client->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_EQ(Str(*frame, "type"), "stream_interrupted") << json::serialize(*frame);
    EXPECT_EQ(Str(*frame, "error"), "inference_unavailable") << json::serialize(*frame);
    EXPECT_EQ(Str(*frame, "messageId"), reply_id);
    EXPECT_EQ(Str(*frame, "partialResponse"), "");
  } else {
    ASSERT_EQ(Str(*frame, "type"), "error") << json::serialize(*frame);
    EXPECT_EQ(Str(*frame, "code"), "inference_unavailable") << json::serialize(*frame);
    EXPECT_EQ(Str(*frame, "id"), "c-1");
  }
  ASSERT_TRUE(client->Send(R"({"type":"ping"})").ok());
  absl::StatusOr<json::object> pong = client->ReadJson();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(Str(*pong, "type"), "pong");
}

TEST_F(ChatTurnTest, SigtermClosesSocketsWithGoingAwayAndExitsCleanly) {
  std::unique_ptr<WsClient> client = Connect("dave");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send(R"({"type":"ping"})").ok());
  ASSERT_TRUE(client->ReadJson().ok());

  stack_->edge().Signal(SIGTERM);
  absl::StatusOr<std::string> frame = client->Read();
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kFailedPrecondition) << frame.status();
  EXPECT_EQ(client->close_code(), 1001);
  EXPECT_EQ(stack_->edge().Wait(), 0);
}

}  // namespace
}  // namespace parley
