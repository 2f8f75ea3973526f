// NUL bytes in a message: both stores refuse them on purpose (PostgreSQL text cannot hold one),
// and each API tells its client so with a clear error, stores nothing and goes on serving.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::HttpRequest;
using ::parley::testing::HttpResponse;
using ::parley::testing::ParleyStack;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

const std::string kWithNul("before\0after", 12);

class NulBytesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { stack_ = ParleyStack::Start().release(); }
  static void TearDownTestSuite() { delete stack_; }

  static HttpResponse Post(const std::string& target, const json::object& body) {
    absl::StatusOr<HttpResponse> response =
        HttpRequest(stack_->edge_address(), "POST", target, json::serialize(body),
                    {{"Content-Type", "application/json"}});
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *std::move(response) : HttpResponse{};
  }

  // The user's conversations: none was stored for a refused message.
  static json::array Conversations(const std::string& user) {
    absl::StatusOr<HttpResponse> response =
        HttpRequest(stack_->edge_address(), "GET", absl::StrCat("/v1/conversations?userId=", user));
    EXPECT_TRUE(response.ok() && response->status == 200);
    return response.ok() ? json::parse(response->body).at("conversations").as_array()
                         : json::array{};
  }

  static ParleyStack* stack_;
};

ParleyStack* NulBytesTest::stack_ = nullptr;

TEST_F(NulBytesTest, TheNativeProtocolAnswersInvalidFrameNamingTheNulByte) {
  ASSERT_NE(stack_, nullptr);
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(stack_->edge_address(), "/ws/chat?userId=nul-native", {"parley.v1"});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->SendJson({{"type", "message"}, {"id", "n1"}, {"content", kWithNul}}).ok());
  absl::StatusOr<json::object> error = (*client)->ReadJson();
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(Str(*error, "type"), "error") << json::serialize(*error);
  EXPECT_EQ(Str(*error, "code"), "invalid_frame");
  EXPECT_EQ(Str(*error, "message"), "cannot store the message: content contains a NUL byte");
  EXPECT_EQ(Str(*error, "id"), "n1");
  EXPECT_TRUE(Conversations("nul-native").empty());

  // The connection goes on: the same text without the NUL byte is answered.
  ASSERT_TRUE(
      (*client)->SendJson({{"type", "message"}, {"id", "n2"}, {"content", "before after"}}).ok());
  EXPECT_TRUE(::parley::testing::ReadUntil(**client, "stream_complete").has_value());
}

TEST_F(NulBytesTest, TheChatCompletionsApiAnswers400InvalidRequest) {
  ASSERT_NE(stack_, nullptr);
  const HttpResponse response =
      Post("/v1/chat/completions?userId=nul-openai",
           {{"messages", json::array{json::object{{"role", "user"}, {"content", kWithNul}}}}});
  EXPECT_EQ(response.status, 400) << response.body;
  const json::object error = json::parse(response.body).at("error").as_object();
  EXPECT_EQ(Str(error, "type"), "invalid_request_error");
  EXPECT_EQ(Str(error, "code"), "invalid_request");
  EXPECT_EQ(Str(error, "message"), "content contains a NUL byte");
  EXPECT_TRUE(Conversations("nul-openai").empty());
}

TEST_F(NulBytesTest, TheAiSdkApiAnswers400InvalidRequest) {
  ASSERT_NE(stack_, nullptr);
  const json::object part{{"type", "text"}, {"text", kWithNul}};
  const HttpResponse response = Post(
      "/api/chat?userId=nul-ai-sdk",
      {{"id", "chat-nul"},
       {"trigger", "submit-message"},
       {"messages",
        json::array{json::object{{"id", "u1"}, {"role", "user"}, {"parts", json::array{part}}}}}});
  EXPECT_EQ(response.status, 400) << response.body;
  const json::object error = json::parse(response.body).at("error").as_object();
  EXPECT_EQ(Str(error, "code"), "invalid_request");
  EXPECT_EQ(Str(error, "message"), "content contains a NUL byte");
  EXPECT_TRUE(Conversations("nul-ai-sdk").empty());
}

}  // namespace
}  // namespace parley
