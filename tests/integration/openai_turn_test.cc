// A full chat turn through the real binaries with the openai engine: browser
// WebSocket → parley-edge → parley-inference → a fake OpenAI-compatible
// upstream, with the reply stored by parley-persistence.
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/inference/recorded_streams.h"
#include "tests/support/child_process.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::inference::testing::FakeOpenAiServer;
using ::parley::inference::testing::SplitEvery;
using ::parley::inference::testing::SseReply;
using ::parley::testing::ChildProcess;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// The three binaries with inference on the openai engine pointed at `upstream`.
struct OpenAiStack {
  std::unique_ptr<ChildProcess> persistence;
  std::unique_ptr<ChildProcess> inference;
  std::unique_ptr<ChildProcess> edge;
  std::string edge_address;
};

OpenAiStack StartWithUpstream(const FakeOpenAiServer& upstream) {
  OpenAiStack stack;
  const std::string data_dir = testing::MakeTempDir();
  stack.persistence = ChildProcess::Start(
      "parley-persistence", {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                             absl::StrCat("--store=sqlite:", data_dir, "/parley.db")});
  stack.inference = ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=openai",
       absl::StrCat("--upstream_url=", upstream.url()), "--upstream_model=gpt-4o-mini"},
      {{"PARLEY_UPSTREAM_API_KEY", "sk-integration"}});
  if (stack.persistence == nullptr || stack.inference == nullptr) {
    ADD_FAILURE() << "cannot start persistence or inference";
    return stack;
  }
  const std::string persistence_address = stack.persistence->WaitForListening();
  const std::string inference_address = stack.inference->WaitForListening();
  stack.edge = ChildProcess::Start(
      "parley-edge", {"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address),
                      absl::StrCat("--persistence=", persistence_address), "--allow_anonymous"});
  if (stack.edge != nullptr) {
    stack.edge_address = stack.edge->WaitForListening();
  }
  EXPECT_FALSE(stack.edge_address.empty()) << "the three services did not start";
  return stack;
}

TEST(OpenAiTurnTest, ChatTurnStreamsTheUpstreamReplyThroughTheEdge) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(SplitEvery(inference::testing::kOpenAiStream, 150)));
  const OpenAiStack stack = StartWithUpstream(upstream);
  const std::string& edge_address = stack.edge_address;
  ASSERT_FALSE(edge_address.empty());

  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge_address, "/ws/chat?userId=alice", {"parley.v1"});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(
      (*client)->SendJson({{"type", "message"}, {"id", "m1"}, {"content", "Say hello"}}).ok());

  std::string text;
  int64_t expected_seq = 1;
  json::object complete;
  for (;;) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::string type = Str(*frame, "type");
    ASSERT_NE(type, "error") << json::serialize(*frame);
    if (type == "stream_start") {
      EXPECT_EQ(Str(*frame, "model"), "gpt-4o-mini");
    } else if (type == "stream_token") {
      EXPECT_EQ(frame->at("seq").to_number<int64_t>(), expected_seq++);
      text += Str(*frame, "token");
    } else if (type == "stream_complete") {
      complete = *frame;
      break;
    }
  }
  EXPECT_EQ(text, "Hello! How can I help?");
  EXPECT_EQ(Str(complete, "finishReason"), "stop");
  EXPECT_EQ(complete.at("usage").at("promptTokens").to_number<int>(), 9);
  EXPECT_EQ(complete.at("usage").at("completionTokens").to_number<int>(), 8);

  // The upstream got a streaming request with the user's words and the key.
  const auto requests = upstream.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].authorization, "Bearer sk-integration");
  const json::value body = json::parse(requests[0].body);
  EXPECT_EQ(body.at("model"), "gpt-4o-mini");
  EXPECT_EQ(body.at("stream"), true);
  const json::array& messages = body.at("messages").as_array();
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages.back().at("content"), "Say hello");
}

TEST(OpenAiTurnTest, TheModelsReasoningStreamsLiveAndIsNotStoredAsTheReply) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(SplitEvery(inference::testing::kVllmReasoningStream, 120)));
  const OpenAiStack stack = StartWithUpstream(upstream);
  ASSERT_FALSE(stack.edge_address.empty());
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(stack.edge_address, "/ws/chat?userId=bob", {"parley.v1"});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->SendJson({{"type", "message"}, {"id", "r1"}, {"content", "Hi"}}).ok());

  std::string reasoning;
  std::string text;
  std::string message_id;
  std::string conversation_id;
  for (;;) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::string type = Str(*frame, "type");
    ASSERT_NE(type, "error") << json::serialize(*frame);
    if (type == "ack") {
      conversation_id = Str(*frame, "conversationId");
    } else if (type == "stream_start") {
      message_id = Str(*frame, "messageId");
    } else if (type == "stream_reasoning") {
      EXPECT_EQ(Str(*frame, "messageId"), message_id);
      EXPECT_TRUE(text.empty()) << "this model reasons before it answers";
      reasoning += Str(*frame, "text");
    } else if (type == "stream_token") {
      text += Str(*frame, "token");
    } else if (type == "stream_complete") {
      break;
    }
  }
  EXPECT_EQ(reasoning, "The user says hi.");
  EXPECT_EQ(text, "Hi there.");

  // The stored reply is the answer alone.
  ASSERT_TRUE((*client)->SendJson({{"type", "history"}, {"conversationId", conversation_id}}).ok());
  std::optional<json::object> history = ::parley::testing::ReadUntil(**client, "history");
  ASSERT_TRUE(history.has_value());
  const json::array& messages = history->at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(Str(messages[1].as_object(), "content"), "Hi there.");
}

}  // namespace
}  // namespace parley
