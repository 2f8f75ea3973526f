// OpenAI's Chat Completions API on the real edge (POST /v1/chat/completions, GET /v1/models):
// the answers' shape, and what persistence stored for each request.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/reply_checksum.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::HttpRequest;
using ::parley::testing::HttpResponse;
using ::parley::testing::IndependentSha256;
using ::parley::testing::ParleyStack;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;

constexpr char kConversationHeader[] = "X-Parley-Conversation-Id";

json::array Messages(std::vector<std::pair<std::string, std::string>> messages) {
  json::array out;
  for (auto& [role, content] : messages) {
    out.push_back(json::object{{"role", role}, {"content", content}});
  }
  return out;
}

class OpenAiApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = ParleyStack::Start(
                 StackOptions{
                     .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=2000"},
                     .edge_flags = {"--max_concurrent_turns=0"},
                 })
                 .release();
  }
  static void TearDownTestSuite() { delete stack_; }

  static HttpResponse Post(const std::string& user, const json::object& body,
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
    headers.emplace_back("Content-Type", "application/json");
    headers.emplace_back("Authorization", "Bearer sk-anything");
    absl::StatusOr<HttpResponse> response = HttpRequest(
        stack_->edge_address(), "POST", absl::StrCat("/v1/chat/completions?userId=", user),
        json::serialize(body), headers);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *std::move(response) : HttpResponse{};
  }

  // The stored messages of a conversation, oldest first, from the conversations API.
  static json::array Stored(const std::string& user, const std::string& conversation_id) {
    absl::StatusOr<HttpResponse> response =
        HttpRequest(stack_->edge_address(), "GET",
                    absl::StrCat("/v1/conversations/", conversation_id, "/messages?userId=", user));
    EXPECT_TRUE(response.ok() && response->status == 200);
    if (!response.ok()) {
      return {};
    }
    return json::parse(response->body).at("messages").as_array();
  }

  // The `data:` payloads of an event stream, in order.
  static std::vector<std::string> Events(const std::string& body) {
    std::vector<std::string> events;
    for (absl::string_view block : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&block, "data: ")) {
        events.emplace_back(block);
      }
    }
    return events;
  }

  static ParleyStack* stack_;
};

ParleyStack* OpenAiApiTest::stack_ = nullptr;

TEST_F(OpenAiApiTest, ACompletionIsStoredAndItsIdIsTheStoredReplysId) {
  ASSERT_NE(stack_, nullptr);
  const HttpResponse response =
      Post("ada", {{"model", "gpt-4o"}, {"messages", Messages({{"user", "Say hello"}})}});
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.content_type, "application/json");
  const json::object body = json::parse(response.body).as_object();
  EXPECT_EQ(Str(body, "object"), "chat.completion");
  const json::object& choice = body.at("choices").as_array().at(0).as_object();
  const std::string content = Str(choice.at("message").as_object(), "content");
  EXPECT_FALSE(content.empty());
  EXPECT_EQ(Str(choice.at("message").as_object(), "role"), "assistant");
  EXPECT_EQ(Str(choice, "finish_reason"), "stop");
  EXPECT_GT(body.at("usage").at("completion_tokens").to_number<int>(), 0);

  const std::string conversation_id = response.Header(kConversationHeader);
  ASSERT_FALSE(conversation_id.empty());
  const json::array stored = Stored("ada", conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[0].as_object(), "content"), "Say hello");
  EXPECT_EQ(Str(stored[1].as_object(), "id"), Str(body, "id"));
  EXPECT_EQ(Str(stored[1].as_object(), "content"), content);
  EXPECT_EQ(Str(stored[1].as_object(), "sha256"), IndependentSha256(content));
}

TEST_F(OpenAiApiTest, AStreamEndsWithOneUsageChunkThenDone) {
  ASSERT_NE(stack_, nullptr);
  const HttpResponse response = Post("bea", {{"messages", Messages({{"user", "Stream it"}})},
                                             {"stream", true},
                                             {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.content_type, "text/event-stream; charset=utf-8");
  const std::vector<std::string> events = Events(response.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string id;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const json::object chunk = json::parse(events[i]).as_object();
    EXPECT_EQ(Str(chunk, "object"), "chat.completion.chunk");
    id = Str(chunk, "id");
    const json::object& choice = chunk.at("choices").as_array().at(0).as_object();
    text += Str(choice.at("delta").as_object(), "content");
  }
  const json::object usage = json::parse(events[events.size() - 2]).as_object();
  EXPECT_TRUE(usage.at("choices").as_array().empty());
  EXPECT_GT(usage.at("usage").at("total_tokens").to_number<int>(), 0);

  const json::array stored = Stored("bea", response.Header(kConversationHeader));
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(Str(stored[1].as_object(), "id"), id);
  EXPECT_EQ(Str(stored[1].as_object(), "content"), text);
}

TEST_F(OpenAiApiTest, TheConversationHeaderContinuesTheStoredBranch) {
  ASSERT_NE(stack_, nullptr);
  const HttpResponse first =
      Post("cy", {{"messages", Messages({{"system", "Be brief."}, {"user", "First question"}})}});
  ASSERT_EQ(first.status, 200) << first.body;
  const std::string conversation_id = first.Header(kConversationHeader);
  const std::string answer = Str(
      json::parse(first.body).at("choices").as_array().at(0).at("message").as_object(), "content");
  // The whole history again, as OpenAI clients send it: only the new question is stored.
  const HttpResponse second = Post("cy",
                                   {{"messages", Messages({{"system", "Be brief."},
                                                           {"user", "First question"},
                                                           {"assistant", answer},
                                                           {"user", "Second question"}})}},
                                   {{kConversationHeader, conversation_id}});
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.Header(kConversationHeader), conversation_id);
  const json::array stored = Stored("cy", conversation_id);
  ASSERT_EQ(stored.size(), 5u);
  EXPECT_EQ(Str(stored[0].as_object(), "role"), "system");
  EXPECT_EQ(Str(stored[3].as_object(), "content"), "Second question");
  EXPECT_EQ(Str(stored[4].as_object(), "id"), Str(json::parse(second.body).as_object(), "id"));

  // Only the new message, with the header: appended to the same conversation.
  const HttpResponse third = Post("cy", {{"messages", Messages({{"user", "Third question"}})}},
                                  {{kConversationHeader, conversation_id}});
  ASSERT_EQ(third.status, 200) << third.body;
  EXPECT_EQ(Stored("cy", conversation_id).size(), 7u);
}

TEST_F(OpenAiApiTest, AClientNamedConversationIsCreatedOnFirstUseAndFoundAfter) {
  ASSERT_NE(stack_, nullptr);
  const HttpResponse first = Post("dee", {{"messages", Messages({{"user", "One"}})}},
                                  {{kConversationHeader, "my-chat-1"}});
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.Header(kConversationHeader), "my-chat-1");
  const HttpResponse second = Post("dee", {{"messages", Messages({{"user", "Two"}})}},
                                   {{kConversationHeader, "my-chat-1"}});
  ASSERT_EQ(second.status, 200) << second.body;
  absl::StatusOr<HttpResponse> list =
      HttpRequest(stack_->edge_address(), "GET", "/v1/conversations?userId=dee");
  ASSERT_TRUE(list.ok());
  const json::value listed = json::parse(list->body);
  const json::array& conversations = listed.at("conversations").as_array();
  ASSERT_EQ(conversations.size(), 1u);
  EXPECT_EQ(Stored("dee", Str(conversations[0].as_object(), "id")).size(), 4u);
}

TEST_F(OpenAiApiTest, BadRequestsGetOpenAiErrors) {
  ASSERT_NE(stack_, nullptr);
  for (const json::object& body :
       {json::object{{"messages", json::array{}}},
        json::object{{"messages", Messages({{"tool", "x"}})}},
        json::object{{"messages", Messages({{"user", "hi"}})}, {"temperature", "hot"}},
        json::object{{"messages", Messages({{"user", "hi"}, {"assistant", "last"}})}}}) {
    const HttpResponse response = Post("eve", body);
    EXPECT_EQ(response.status, 400) << json::serialize(body);
    const json::object error = json::parse(response.body).at("error").as_object();
    EXPECT_EQ(Str(error, "type"), "invalid_request_error");
    EXPECT_FALSE(Str(error, "message").empty());
  }
  const HttpResponse unknown = Post("eve", {{"messages", Messages({{"user", "hi"}})}},
                                    {{kConversationHeader, "0123456789abcdef0123456789abcdef"}});
  EXPECT_EQ(unknown.status, 404) << unknown.body;
}

TEST_F(OpenAiApiTest, ModelsListsTheInferenceServicesModels) {
  ASSERT_NE(stack_, nullptr);
  absl::StatusOr<HttpResponse> response = HttpRequest(stack_->edge_address(), "GET", "/v1/models",
                                                      "", {{"Authorization", "Bearer sk-x"}});
  ASSERT_TRUE(response.ok());
  ASSERT_EQ(response->status, 200) << response->body;
  const json::object body = json::parse(response->body).as_object();
  EXPECT_EQ(Str(body, "object"), "list");
  ASSERT_FALSE(body.at("data").as_array().empty());
  EXPECT_EQ(Str(body.at("data").as_array()[0].as_object(), "object"), "model");
}

TEST(OpenAiApiLimitsTest, TooManyRequestsAnswer429WithRetryAfter) {
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(
      StackOptions{.edge_flags = {"--user_messages_per_minute=1", "--user_message_burst=1"}});
  ASSERT_NE(stack, nullptr);
  const std::string body = json::serialize(json::object{{"messages", Messages({{"user", "hi"}})}});
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "application/json"}};
  absl::StatusOr<HttpResponse> first =
      HttpRequest(stack->edge_address(), "POST", "/v1/chat/completions?userId=fay", body, headers);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->status, 200) << first->body;
  absl::StatusOr<HttpResponse> second =
      HttpRequest(stack->edge_address(), "POST", "/v1/chat/completions?userId=fay", body, headers);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status, 429) << second->body;
  EXPECT_FALSE(second->Header("Retry-After").empty());
  EXPECT_EQ(Str(json::parse(second->body).at("error").as_object(), "code"), "rate_limit_exceeded");
}

}  // namespace
}  // namespace parley
