// A full chat turn through the real binaries with the openai engine: browser
// WebSocket → parley-edge → parley-inference → a fake OpenAI-compatible
// upstream, with the reply stored by parley-persistence.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/inference/recorded_streams.h"
#include "tests/support/child_process.h"
#include "tests/support/reply_checksum.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::inference::testing::FakeOpenAiServer;
using ::parley::inference::testing::FakeReply;
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

OpenAiStack StartWithUpstream(const FakeOpenAiServer& upstream,
                              const std::vector<std::string>& edge_flags = {}) {
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
  std::vector<std::string> flags = {
      "--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address),
      absl::StrCat("--persistence=", persistence_address), "--allow_anonymous"};
  flags.insert(flags.end(), edge_flags.begin(), edge_flags.end());
  stack.edge = ChildProcess::Start("parley-edge", flags);
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

// The `data:` payloads of an event stream, parsed, in order; `[DONE]` is left out.
std::vector<json::object> EventObjects(const std::string& body) {
  std::vector<json::object> events;
  for (absl::string_view block : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&block, "data: ") && block != "[DONE]") {
      events.push_back(json::parse(json::string_view(block.data(), block.size())).as_object());
    }
  }
  return events;
}

TEST(OpenAiTurnTest, TheHttpApisStreamTheModelsReasoningApartFromTheAnswer) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(SplitEvery(inference::testing::kVllmReasoningStream, 120)));
  upstream.Enqueue(SseReply(SplitEvery(inference::testing::kVllmReasoningStream, 120)));
  const OpenAiStack stack = StartWithUpstream(upstream);
  ASSERT_FALSE(stack.edge_address.empty());

  // Chat Completions: `delta.reasoning_content` chunks, then the answer as `delta.content`.
  absl::StatusOr<::parley::testing::HttpResponse> completion = ::parley::testing::HttpRequest(
      stack.edge_address, "POST", "/v1/chat/completions?userId=reasoner",
      json::serialize(json::object{
          {"stream", true},
          {"messages", json::array{json::object{{"role", "user"}, {"content", "Hi"}}}}}),
      {{"Content-Type", "application/json"}});
  ASSERT_TRUE(completion.ok()) << completion.status();
  ASSERT_EQ(completion->status, 200) << completion->body;
  EXPECT_TRUE(absl::EndsWith(completion->body, "data: [DONE]\n\n"));
  std::string reasoning;
  std::string text;
  for (const json::object& chunk : EventObjects(completion->body)) {
    ASSERT_EQ(Str(chunk, "object"), "chat.completion.chunk") << json::serialize(chunk);
    const json::object& delta = chunk.at("choices").as_array()[0].at("delta").as_object();
    if (delta.contains("reasoning_content")) {
      EXPECT_TRUE(text.empty()) << "this model reasons before it answers";
      reasoning += Str(delta, "reasoning_content");
    }
    if (delta.contains("content")) {
      text += Str(delta, "content");
    }
  }
  EXPECT_EQ(reasoning, "The user says hi.");
  EXPECT_EQ(text, "Hi there.");

  // The AI SDK's UI message stream: its header, reasoning parts, then text parts.
  absl::StatusOr<::parley::testing::HttpResponse> ui = ::parley::testing::HttpRequest(
      stack.edge_address, "POST", "/api/chat?userId=reasoner",
      json::serialize(json::object{
          {"id", "chat-reasoner"},
          {"trigger", "submit-message"},
          {"messages",
           json::array{json::object{
               {"id", "u1"},
               {"role", "user"},
               {"parts", json::array{json::object{{"type", "text"}, {"text", "Hi"}}}}}}}}),
      {{"Content-Type", "application/json"}});
  ASSERT_TRUE(ui.ok()) << ui.status();
  ASSERT_EQ(ui->status, 200) << ui->body;
  EXPECT_EQ(ui->Header("x-vercel-ai-ui-message-stream"), "v1");
  EXPECT_TRUE(absl::EndsWith(ui->body, "data: [DONE]\n\n"));
  std::vector<std::string> types;
  reasoning.clear();
  text.clear();
  for (const json::object& part : EventObjects(ui->body)) {
    const std::string type = Str(part, "type");
    if (types.empty() || types.back() != type) {
      types.push_back(type);
    }
    if (type == "reasoning-delta") {
      reasoning += Str(part, "delta");
    } else if (type == "text-delta") {
      text += Str(part, "delta");
    }
  }
  EXPECT_EQ(reasoning, "The user says hi.");
  EXPECT_EQ(text, "Hi there.");
  const std::vector<std::string> expected = {"start",         "reasoning-start", "reasoning-delta",
                                             "reasoning-end", "text-start",      "text-delta",
                                             "text-end",      "finish"};
  std::vector<std::string> seen;
  for (const std::string& type : types) {
    if (std::find(expected.begin(), expected.end(), type) != expected.end()) {
      seen.push_back(type);
    }
  }
  EXPECT_EQ(seen, expected) << absl::StrJoin(types, ",");
}

// The first `count` events of the recorded stream ("Hello" and "!" after the role), and then
// nothing: the upstream holds the request open as a model that is still thinking would.
FakeReply StalledReply(int count) {
  std::vector<std::string> events = absl::StrSplit(inference::testing::kOpenAiStream, "\n\n");
  std::string body;
  for (int i = 0; i < count; ++i) {
    absl::StrAppend(&body, events[i], "\n\n");
  }
  FakeReply reply = SseReply({body}, /*finish_message=*/false);
  reply.then = FakeReply::Then::kHold;
  return reply;
}

// Sends a message with `deadline_ms` and checks what a client of a reply that outlives its
// deadline sees and what is stored: the text streamed before the deadline, interrupted with
// deadline_exceeded, and the upstream request closed.
void ExpectCutAtTheDeadline(const OpenAiStack& stack, FakeOpenAiServer& upstream,
                            const std::string& user, int64_t deadline_ms) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(stack.edge_address, absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)
                  ->SendJson({{"type", "message"},
                              {"id", "d1"},
                              {"content", "Take your time"},
                              {"deadlineMs", deadline_ms}})
                  .ok());
  std::string text;
  std::string conversation_id;
  json::object end;
  for (;;) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::string type = Str(*frame, "type");
    ASSERT_NE(type, "error") << json::serialize(*frame);
    ASSERT_NE(type, "stream_complete") << "the upstream never finishes this reply";
    if (type == "ack") {
      conversation_id = Str(*frame, "conversationId");
    } else if (type == "stream_token") {
      text += Str(*frame, "token");
    } else if (type == "stream_interrupted") {
      end = *frame;
      break;
    }
  }
  const auto interrupted_at = std::chrono::steady_clock::now();
  EXPECT_EQ(Str(end, "error"), "deadline_exceeded");
  EXPECT_EQ(Str(end, "partialResponse"), text);
  EXPECT_TRUE(::parley::testing::VerifyReplyChecksum(text, end).ok());

  // The upstream saw its request closed (how soon is a benchmark's question, not this test's).
  const std::optional<std::chrono::steady_clock::time_point> closed = upstream.WaitForDisconnect();
  ASSERT_TRUE(closed.has_value()) << "the upstream request stayed open past the deadline";
  ::testing::Test::RecordProperty(
      "upstream_closed_ms_after_client_saw_interruption",
      static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(*closed - interrupted_at).count()));

  ASSERT_TRUE((*client)->SendJson({{"type", "history"}, {"conversationId", conversation_id}}).ok());
  std::optional<json::object> history = ::parley::testing::ReadUntil(**client, "history");
  ASSERT_TRUE(history.has_value());
  const json::array& messages = history->at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(Str(messages[1].as_object(), "status"), "interrupted");
  EXPECT_EQ(Str(messages[1].as_object(), "content"), text);
}

TEST(OpenAiTurnTest, AReplyPastTheClientsDeadlineIsCutAndStoredAsStreamed) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(StalledReply(3));
  const OpenAiStack stack = StartWithUpstream(upstream);
  ASSERT_FALSE(stack.edge_address.empty());
  ExpectCutAtTheDeadline(stack, upstream, "dora", /*deadline_ms=*/4000);
}

TEST(OpenAiTurnTest, MaxDeadlineCapsTheClientsDeadline) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(StalledReply(3));
  const OpenAiStack stack = StartWithUpstream(upstream, {"--max_deadline_ms=4000"});
  ASSERT_FALSE(stack.edge_address.empty());
  ExpectCutAtTheDeadline(stack, upstream, "cap", /*deadline_ms=*/3600 * 1000);
}

TEST(OpenAiTurnTest, MaxDeadlineCapsTheChatCompletionsDeadlineToo) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(StalledReply(3));
  const OpenAiStack stack = StartWithUpstream(upstream, {"--max_deadline_ms=1000"});
  ASSERT_FALSE(stack.edge_address.empty());
  absl::StatusOr<::parley::testing::HttpResponse> response = ::parley::testing::HttpRequest(
      stack.edge_address, "POST", "/v1/chat/completions?userId=capped",
      json::serialize(json::object{
          {"stream", true},
          {"messages",
           json::array{json::object{{"role", "user"}, {"content", "Take your time"}}}}}),
      {{"Content-Type", "application/json"}, {"X-Parley-Deadline-Ms", "3600000"}});
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->status, 200) << response->body;
  const std::vector<json::object> events = EventObjects(response->body);
  ASSERT_FALSE(events.empty());
  ASSERT_TRUE(events.back().contains("error")) << response->body;
  EXPECT_EQ(Str(events.back().at("error").as_object(), "code"), "deadline_exceeded");
  EXPECT_TRUE(upstream.WaitForDisconnect().has_value())
      << "the upstream request stayed open past the capped deadline";
}

}  // namespace
}  // namespace parley
