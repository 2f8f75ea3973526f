// The copilot dialect on /copilot, checked the way the copilot hook uses it: one socket
// opened with `?userId=…&token=…`, `{"action":"message",…}` frames, and the frames it switches on.
// The model is a fake OpenAI-compatible upstream behind the real parley-inference, so every
// reply (and every suggestions generation) has exactly the shape a test gives it.
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/edge/auth/jwt_test_keys.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/integration/dialect_test_util.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

namespace json = boost::json;
using ::parley::inference::testing::FakeOpenAiServer;
using ::parley::inference::testing::JsonReply;
using ::parley::inference::testing::SseReply;

constexpr char kSuggestionsAnswer[] =
    "Here are three follow-up questions:\n"
    "1. \"Can you show the supplier's details?\"\n"
    "2. **Should I add another supplier?**\n"
    "3. What does the supply chain look like now?\n";

// The upstream request that asked for suggestions rather than a reply.
bool IsSuggestionsRequest(const FakeOpenAiServer::Request& request) {
  return absl::StrContains(request.body, "follow-up questions");
}

constexpr char kSecret[] = "an-hs256-secret-of-at-least-32-bytes!!";

std::string Token(const std::string& sub) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  return edge::testing::SignHs256(
      R"({"alg":"HS256","typ":"JWT"})",
      absl::StrCat(R"({"sub":")", sub, R"(","iat":)", now, R"(,"exp":)", now + 600, "}"), kSecret);
}

std::string SecretFile() {
  const std::string path = absl::StrCat(MakeTempDir(), "/jwt-secret");
  std::ofstream(path) << kSecret << "\n";
  return path;
}

class CopilotDialectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stack_ = StartWithUpstream(upstream_, {absl::StrCat("--jwt_secret_file=", SecretFile())});
    ASSERT_NE(stack_, nullptr);
    started_ms_ = NowMillis();
  }

  const std::string& edge() { return stack_->edge_address(); }

  // Opens /copilot the way the hook does before a login: the token is the string "null".
  std::unique_ptr<WsClient> Connect(const std::string& user, const std::string& token = "null") {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(edge(), absl::StrCat("/copilot?userId=", user, "&token=", token));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static json::object Send(const std::string& text, const std::string& conversation_id = "",
                           std::optional<bool> streaming = std::nullopt) {
    json::object frame{{"action", "message"}, {"message", text}};
    if (!conversation_id.empty()) {
      frame["conversationId"] = conversation_id;
    }
    if (streaming.has_value()) {
      frame["streaming"] = *streaming;
    }
    return frame;
  }

  // The next frame, which must be of `type` with exactly `keys` and a plausible timestamp.
  json::object Expect(WsClient& client, const std::string& type, std::set<std::string> keys) {
    absl::StatusOr<json::object> frame = client.ReadJson();
    if (!frame.ok()) {
      ADD_FAILURE() << "waiting for " << type << ": " << frame.status();
      return {};
    }
    EXPECT_EQ(Str(*frame, "type"), type) << json::serialize(*frame);
    keys.insert({"type", "timestamp"});
    EXPECT_EQ(Keys(*frame), keys) << json::serialize(*frame);
    const json::value* timestamp = frame->if_contains("timestamp");
    EXPECT_TRUE(timestamp != nullptr && timestamp->is_int64()) << json::serialize(*frame);
    if (timestamp != nullptr && timestamp->is_int64()) {
      // Milliseconds since the epoch, not seconds.
      EXPECT_GE(timestamp->get_int64(), started_ms_);
      EXPECT_LE(timestamp->get_int64(), NowMillis());
    }
    return *frame;
  }

  // acknowledgment and typing, the answer to every message.
  void ExpectAcknowledged(WsClient& client) {
    const json::object ack = Expect(client, "acknowledgment", {"message"});
    EXPECT_EQ(Str(ack, "message"), "Message received. Processing...");
    Expect(client, "typing", {});
  }

  // stream_start, one stream_token per piece and stream_complete; returns stream_complete.
  json::object ExpectStream(WsClient& client, const std::string& conversation_id,
                            const std::vector<std::string>& pieces) {
    const json::object start = Expect(client, "stream_start", {"conversationId", "metadata"});
    EXPECT_EQ(Str(start, "conversationId"), conversation_id);
    EXPECT_EQ(Str(Obj(start, "metadata"), "model"), kTestModel);
    for (const std::string& piece : pieces) {
      const json::object token = Expect(client, "stream_token", {"token", "conversationId"});
      EXPECT_EQ(Str(token, "token"), piece);
      EXPECT_EQ(Str(token, "conversationId"), conversation_id);
    }
    return Expect(client, "stream_complete", {"conversationId", "metadata"});
  }

  FakeOpenAiServer upstream_;
  std::unique_ptr<ParleyStack> stack_;
  int64_t started_ms_ = 0;
};

TEST_F(CopilotDialectTest, AStreamedReplyArrivesInTheHooksFramesThenItsSuggestions) {
  const std::vector<std::string> pieces = {"I've ", "added a new ", "supplier in Asia."};
  upstream_.Enqueue(StreamedReply(pieces, /*completion_tokens=*/7));
  upstream_.Enqueue(SseReply(DeltaEvent(kSuggestionsAnswer) + "data: [DONE]\n\n"));
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Send("Add a new supplier in Asia", "", true)).ok());
  ExpectAcknowledged(*client);
  // A new conversation: its id is in every frame that carries one.
  absl::StatusOr<json::object> start = client->ReadJson();
  ASSERT_TRUE(start.ok()) << start.status();
  ASSERT_EQ(Str(*start, "type"), "stream_start");
  const std::string conversation_id = Str(*start, "conversationId");
  ASSERT_FALSE(conversation_id.empty());
  EXPECT_EQ(Str(Obj(*start, "metadata"), "model"), kTestModel);
  std::string streamed;
  for (const std::string& piece : pieces) {
    const json::object token = Expect(*client, "stream_token", {"token", "conversationId"});
    EXPECT_EQ(Str(token, "token"), piece);
    EXPECT_EQ(Str(token, "conversationId"), conversation_id);
    streamed += Str(token, "token");
  }
  const json::object complete = Expect(*client, "stream_complete", {"conversationId", "metadata"});
  EXPECT_EQ(Str(complete, "conversationId"), conversation_id);
  const json::object metadata = Obj(complete, "metadata");
  EXPECT_EQ(Int(metadata, "tokenCount"), 7);
  EXPECT_EQ(Val(metadata, "actionSuccess"), json::value(true));
  EXPECT_EQ(Str(metadata, "finishReason"), "stop");
  const std::string reply_id = Str(metadata, "messageId");

  // Suggestions come after the reply, from a second generation that saw the reply.
  const json::object suggestions =
      Expect(*client, "suggestions", {"suggestions", "conversationId"});
  EXPECT_EQ(Str(suggestions, "conversationId"), conversation_id);
  EXPECT_EQ(Val(suggestions, "suggestions"),
            json::value(json::array{"Can you show the supplier's details?",
                                    "Should I add another supplier?",
                                    "What does the supply chain look like now?"}));
  const std::vector<FakeOpenAiServer::Request> requests = upstream_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_FALSE(IsSuggestionsRequest(requests[0]));
  EXPECT_TRUE(IsSuggestionsRequest(requests[1]));
  EXPECT_TRUE(absl::StrContains(requests[1].body, "supplier in Asia."));

  // The stored reply is what streamed.
  const json::array stored = StoredMessages(edge(), "alice", conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[0].as_object(), "content"), "Add a new supplier in Asia");
  EXPECT_EQ(Str(stored[1].as_object(), "id"), reply_id);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), streamed);
  EXPECT_EQ(Str(stored[1].as_object(), "status"), "complete");
}

TEST_F(CopilotDialectTest, WithoutStreamingTheReplyIsOneMessageThenSuggestions) {
  upstream_.Enqueue(StreamedReply({"Hello", ", Alice."}, 3));
  upstream_.Enqueue(SseReply(DeltaEvent("What can you do?\nWho are you?") + "data: [DONE]\n\n"));
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Send("Hi", "", false)).ok());
  ExpectAcknowledged(*client);
  const json::object message =
      Expect(*client, "message", {"content", "conversationId", "metadata"});
  EXPECT_EQ(Str(message, "content"), "Hello, Alice.");
  const std::string conversation_id = Str(message, "conversationId");
  EXPECT_EQ(Int(Obj(message, "metadata"), "tokenCount"), 3);
  const json::object suggestions =
      Expect(*client, "suggestions", {"suggestions", "conversationId"});
  EXPECT_EQ(Val(suggestions, "suggestions"),
            json::value(json::array{"What can you do?", "Who are you?"}));
  EXPECT_EQ(Str(suggestions, "conversationId"), conversation_id);

  const json::array stored = StoredMessages(edge(), "alice", conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), "Hello, Alice.");
}

TEST_F(CopilotDialectTest, AFailedSuggestionsGenerationSendsNothing) {
  upstream_.Enqueue(StreamedReply({"First answer."}, 2));
  upstream_.Enqueue(JsonReply(500, R"({"error":{"message":"overloaded"}})"));
  upstream_.Enqueue(StreamedReply({"Second answer."}, 2));
  upstream_.Enqueue(SseReply(DeltaEvent("And then?") + "data: [DONE]\n\n"));
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Send("One")).ok());
  ExpectAcknowledged(*client);
  absl::StatusOr<json::object> start = client->ReadJson();
  ASSERT_TRUE(start.ok());
  const std::string conversation_id = Str(*start, "conversationId");
  Expect(*client, "stream_token", {"token", "conversationId"});
  Expect(*client, "stream_complete", {"conversationId", "metadata"});

  // A message waits for the last reply's suggestions, so whatever the failed generation sent
  // would come before the answer to this one: neither `suggestions` nor `error` does.
  ASSERT_TRUE(client->SendJson(Send("Two", conversation_id)).ok());
  ExpectAcknowledged(*client);
  // By then the failed generation was counted.
  absl::StatusOr<HttpResponse> metrics = HttpGet(edge(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_TRUE(
      absl::StrContains(metrics->body, "parley_edge_suggestions_total{outcome=\"failed\"} 1"))
      << metrics->body;
  ExpectStream(*client, conversation_id, {"Second answer."});
  const json::object suggestions =
      Expect(*client, "suggestions", {"suggestions", "conversationId"});
  EXPECT_EQ(Val(suggestions, "suggestions"), json::value(json::array{"And then?"}));
  EXPECT_TRUE(IsSuggestionsRequest(upstream_.requests()[1]));
}

TEST_F(CopilotDialectTest, AReplyTheModelBreaksOffIsInterruptedWithTheStoredTextAndNoSuggestions) {
  upstream_.Enqueue(BrokenReply({"I've added ", "a new supp"}));
  upstream_.Enqueue(StreamedReply({"Retried."}, 1));
  upstream_.Enqueue(SseReply(DeltaEvent("Next?") + "data: [DONE]\n\n"));
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Send("Add a new supplier in Asia")).ok());
  ExpectAcknowledged(*client);
  absl::StatusOr<json::object> start = client->ReadJson();
  ASSERT_TRUE(start.ok());
  const std::string conversation_id = Str(*start, "conversationId");
  Expect(*client, "stream_token", {"token", "conversationId"});
  Expect(*client, "stream_token", {"token", "conversationId"});
  const json::object interrupted =
      Expect(*client, "stream_interrupted", {"conversationId", "error", "partialResponse"});
  EXPECT_EQ(Str(interrupted, "conversationId"), conversation_id);
  EXPECT_FALSE(Str(interrupted, "error").empty());
  EXPECT_EQ(Str(interrupted, "partialResponse"), "I've added a new supp");

  const json::array stored = StoredMessages(edge(), "alice", conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), "I've added a new supp");
  EXPECT_EQ(Str(stored[1].as_object(), "status"), "interrupted");

  // The next message is answered by the next reply: no suggestions were asked for in between.
  ASSERT_TRUE(client->SendJson(Send("Try again", conversation_id)).ok());
  ExpectAcknowledged(*client);
  ExpectStream(*client, conversation_id, {"Retried."});
  Expect(*client, "suggestions", {"suggestions", "conversationId"});
  const std::vector<FakeOpenAiServer::Request> requests = upstream_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_FALSE(IsSuggestionsRequest(requests[1]));
}

TEST_F(CopilotDialectTest, AWrongFrameIsAnErrorAndTheSocketStaysOpen) {
  upstream_.Enqueue(StreamedReply({"Fine."}, 1));
  std::unique_ptr<WsClient> client = Connect("alice");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->Send("this is not JSON").ok());
  EXPECT_EQ(Str(Expect(*client, "error", {"error"}), "error"), "frame is not valid JSON");
  ASSERT_TRUE(client->SendJson({{"action", "message"}}).ok());
  EXPECT_EQ(Str(Expect(*client, "error", {"error"}), "error"),
            "\"message\" needs a non-empty string \"message\"");
  ASSERT_TRUE(client->SendJson({{"action", "subscribe"}}).ok());
  EXPECT_FALSE(Str(Expect(*client, "error", {"error"}), "error").empty());

  ASSERT_TRUE(client->SendJson(Send("Still there?", "", true)).ok());
  ExpectAcknowledged(*client);
  absl::StatusOr<json::object> start = client->ReadJson();
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(Str(*start, "type"), "stream_start");
}

TEST_F(CopilotDialectTest,
       NoTokenOrTheHooksPlaceholdersConnectAndABadTokenIsRefusedBeforeAnyFrame) {
  for (const std::string query : {"userId=carol&token=null", "userId=carol&token=undefined",
                                  "userId=carol&token=", "userId=carol"}) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(edge(), absl::StrCat("/copilot?", query));
    EXPECT_TRUE(client.ok()) << query << ": " << client.status();
  }
  EXPECT_EQ(UpgradeStatus(edge(), "/copilot?userId=carol&token=not-a-jwt"), 401);
  EXPECT_EQ(UpgradeStatus(edge(), "/copilot?userId=carol&token=a.b.c"), 401);
}

TEST_F(CopilotDialectTest, AValidTokenInTheQueryNamesTheUserWhateverUserIdSays) {
  upstream_.Enqueue(StreamedReply({"Hi, Olga."}, 3));
  upstream_.Enqueue(SseReply(DeltaEvent("How are you?") + "data: [DONE]\n\n"));
  std::unique_ptr<WsClient> client = Connect("mallory", Token("olga"));
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Send("Hello")).ok());
  ExpectAcknowledged(*client);
  absl::StatusOr<json::object> start = client->ReadJson();
  ASSERT_TRUE(start.ok());
  const std::string conversation_id = Str(*start, "conversationId");
  Expect(*client, "stream_token", {"token", "conversationId"});
  Expect(*client, "stream_complete", {"conversationId", "metadata"});

  // The conversation is the token's user's, not the one `userId` names.
  absl::StatusOr<HttpResponse> olgas =
      HttpRequest(edge(), "GET", absl::StrCat("/v1/conversations/", conversation_id, "/messages"),
                  "", {{"Authorization", absl::StrCat("Bearer ", Token("olga"))}});
  ASSERT_TRUE(olgas.ok());
  EXPECT_EQ(olgas->status, 200);
  absl::StatusOr<HttpResponse> mallorys = HttpGet(
      edge(), absl::StrCat("/v1/conversations/", conversation_id, "/messages?userId=mallory"));
  ASSERT_TRUE(mallorys.ok());
  EXPECT_EQ(mallorys->status, 404);
}

}  // namespace
}  // namespace parley::testing
