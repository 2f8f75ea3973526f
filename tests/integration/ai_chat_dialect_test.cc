// The ai-chat dialect on /ws/ai-chat, checked the way the page's useAIWebSocket hook uses it:
// `{"type":"chat","message","model":"gpt-4o"}` and pings in, chunk/done/error/pong out, one
// conversation per socket, sanitised text, and the per-connection limit that closes with 1008.
// The model is a fake OpenAI-compatible upstream behind the real parley-inference.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/integration/dialect_test_util.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

namespace json = boost::json;
using ::parley::inference::testing::FakeOpenAiServer;

json::object Chat(const std::string& text) {
  // The page's hook always names its model.
  return json::object{{"type", "chat"}, {"message", text}, {"model", "gpt-4o"}};
}

class AiChatDialectTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> edge_flags = {}) {
    stack_ = StartWithUpstream(upstream_, std::move(edge_flags));
    ASSERT_NE(stack_, nullptr);
  }

  const std::string& edge() { return stack_->edge_address(); }

  std::unique_ptr<WsClient> Connect(const std::string& user,
                                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(edge(), absl::StrCat("/ws/ai-chat?userId=", user), {}, headers);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // Reads `chunk` frames up to `done` (each with only `type` and `content`) and returns their
  // concatenated content; records a failure on anything else.
  std::string ReadReply(WsClient& client, int* chunks = nullptr) {
    std::string text;
    for (;;) {
      absl::StatusOr<json::object> frame = client.ReadJson();
      if (!frame.ok()) {
        ADD_FAILURE() << frame.status();
        return text;
      }
      const std::string type = Str(*frame, "type");
      if (type == "done") {
        EXPECT_EQ(Keys(*frame), std::set<std::string>{"type"});
        return text;
      }
      if (type != "chunk") {
        ADD_FAILURE() << "unexpected " << json::serialize(*frame);
        return text;
      }
      EXPECT_EQ(Keys(*frame), (std::set<std::string>{"type", "content"}));
      text += Str(*frame, "content");
      if (chunks != nullptr) {
        ++*chunks;
      }
    }
  }

  FakeOpenAiServer upstream_;
  std::unique_ptr<ParleyStack> stack_;
};

TEST_F(AiChatDialectTest, ChatsStreamAsChunksThenDoneAndOneSocketIsOneConversation) {
  Start();
  upstream_.Enqueue(StreamedReply({"The weather", " is sunny."}, 4));
  upstream_.Enqueue(StreamedReply({"Yes, ", "still sunny."}, 3));
  std::unique_ptr<WsClient> client = Connect("dana");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Chat("What is the weather today?")).ok());
  int chunks = 0;
  EXPECT_EQ(ReadReply(*client, &chunks), "The weather is sunny.");
  EXPECT_EQ(chunks, 2);
  ASSERT_TRUE(client->SendJson({{"type", "ping"}}).ok());
  absl::StatusOr<json::object> pong = client->ReadJson();
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(*pong, (json::object{{"type", "pong"}}));

  // The second chat continues the first: the model gets the earlier turn as context.
  ASSERT_TRUE(client->SendJson(Chat("Still?")).ok());
  EXPECT_EQ(ReadReply(*client), "Yes, still sunny.");
  const std::vector<FakeOpenAiServer::Request> requests = upstream_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_TRUE(absl::StrContains(requests[1].body, "What is the weather today?"));
  EXPECT_TRUE(absl::StrContains(requests[1].body, "The weather is sunny."));

  const std::vector<std::string> conversations = ConversationIds(edge(), "dana");
  ASSERT_EQ(conversations.size(), 1u);
  const json::array stored = StoredMessages(edge(), "dana", conversations[0]);
  ASSERT_EQ(stored.size(), 4u);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), "The weather is sunny.");
  EXPECT_EQ(Str(stored[3].as_object(), "content"), "Yes, still sunny.");

  // A new socket is a new conversation.
  upstream_.Enqueue(StreamedReply({"Hello again."}, 2));
  std::unique_ptr<WsClient> second = Connect("dana");
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->SendJson(Chat("Hi")).ok());
  EXPECT_EQ(ReadReply(*second), "Hello again.");
  EXPECT_EQ(ConversationIds(edge(), "dana").size(), 2u);
}

TEST_F(AiChatDialectTest, AScriptOpeningIsSanitisedEvenSplitAcrossChunksAndStoredAsWritten) {
  Start();
  const std::string model_text =
      "Try <scr"
      "IPT>alert(1)</script> or <SCRIPT src=x>.";
  upstream_.Enqueue(StreamedReply({"Try <scr", "IPT>alert(1)</script> or <SCRIPT src=x>."}, 9));
  std::unique_ptr<WsClient> client = Connect("erin");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Chat("Show me a script tag")).ok());
  const std::string received = ReadReply(*client);
  EXPECT_EQ(received, "Try &lt;script>alert(1)</script> or &lt;script src=x>.");

  const std::vector<std::string> conversations = ConversationIds(edge(), "erin");
  ASSERT_EQ(conversations.size(), 1u);
  const json::array stored = StoredMessages(edge(), "erin", conversations[0]);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), model_text);
}

TEST_F(AiChatDialectTest, AReplyTheModelBreaksOffEndsWithAnError) {
  Start();
  upstream_.Enqueue(BrokenReply({"Partly ", "<scr"}));
  std::unique_ptr<WsClient> client = Connect("fay");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Chat("Hello")).ok());
  std::string text;
  for (;;) {
    absl::StatusOr<json::object> frame = client->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (Str(*frame, "type") != "chunk") {
      EXPECT_EQ(Str(*frame, "type"), "error");
      EXPECT_EQ(Keys(*frame), (std::set<std::string>{"type", "message"}));
      EXPECT_FALSE(Str(*frame, "message").empty());
      break;
    }
    text += Str(*frame, "content");
  }
  // What the client shows is what was stored, the held-back end included.
  EXPECT_EQ(text, "Partly <scr");
  const std::vector<std::string> conversations = ConversationIds(edge(), "fay");
  ASSERT_EQ(conversations.size(), 1u);
  const json::array stored = StoredMessages(edge(), "fay", conversations[0]);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), "Partly <scr");
}

TEST_F(AiChatDialectTest, AWrongFrameIsAnErrorAndTheSocketStaysOpen) {
  Start();
  std::unique_ptr<WsClient> client = Connect("gus");
  ASSERT_NE(client, nullptr);
  for (const std::string& frame : {std::string("nope"), std::string(R"({"type":"chat"})"),
                                   std::string(R"({"type":"batch","messages":["a"]})")}) {
    ASSERT_TRUE(client->Send(frame).ok());
    absl::StatusOr<json::object> error = client->ReadJson();
    ASSERT_TRUE(error.ok()) << error.status();
    EXPECT_EQ(Str(*error, "type"), "error") << frame;
    EXPECT_EQ(Keys(*error), (std::set<std::string>{"type", "message"}));
  }
  ASSERT_TRUE(client->SendJson({{"type", "ping"}}).ok());
  absl::StatusOr<json::object> pong = client->ReadJson();
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(Str(*pong, "type"), "pong");
}

TEST_F(AiChatDialectTest, TheChatPastThePerMinuteLimitIsRefusedAndTheSocketClosedWith1008) {
  // The dialect's own budget replaces the per-connection one: two chats pass even though a
  // native connection would be refused its second.
  Start({"--ai_chat_messages_per_minute=2", "--connection_messages_per_minute=1",
         "--connection_message_burst=1"});
  upstream_.Enqueue(StreamedReply({"One."}, 1));
  upstream_.Enqueue(StreamedReply({"Two."}, 1));
  std::unique_ptr<WsClient> client = Connect("hal");
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->SendJson(Chat("1")).ok());
  EXPECT_EQ(ReadReply(*client), "One.");
  ASSERT_TRUE(client->SendJson(Chat("2")).ok());
  EXPECT_EQ(ReadReply(*client), "Two.");
  ASSERT_TRUE(client->SendJson(Chat("3")).ok());
  absl::StatusOr<json::object> error = client->ReadJson();
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(*error, (json::object{{"type", "error"}, {"message", "Rate limit exceeded"}}));
  absl::StatusOr<json::object> after = client->ReadJson();
  EXPECT_FALSE(after.ok());
  EXPECT_EQ(client->close_code(), 1008);
  EXPECT_EQ(upstream_.requests().size(), 2u);
}

TEST_F(AiChatDialectTest, OriginsAreCheckedAndABadTokenIsRefusedBeforeAnyFrame) {
  Start({"--allowed_origins=https://chat.example.com"});
  EXPECT_EQ(UpgradeStatus(edge(), "/ws/ai-chat?userId=ivy", {{"Origin", "https://evil.example"}}),
            403);
  EXPECT_NE(Connect("ivy", {{"Origin", "https://chat.example.com"}}), nullptr);
  EXPECT_EQ(UpgradeStatus(edge(), "/ws/ai-chat?token=not-a-jwt",
                          {{"Origin", "https://chat.example.com"}}),
            401);
  EXPECT_EQ(UpgradeStatus(
                edge(), "/ws/ai-chat",
                {{"Origin", "https://chat.example.com"}, {"Authorization", "Bearer not-a-jwt"}}),
            401);
}

}  // namespace
}  // namespace parley::testing
