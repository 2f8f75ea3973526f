// The pure parts of the conversations HTTP API: routing, request parsing and the JSON it answers.
#include "edge/server/conversations_api.h"

#include <string>

#include "absl/status/status.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "edge/clients/persistence_names.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;

TEST(RouteConversationsApiTest, NamesTheThreeResources) {
  std::optional<ApiRoute> route = RouteConversationsApi("/v1/conversations");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(route->resource, ApiRoute::Resource::kConversations);
  EXPECT_EQ(route->label(), "/v1/conversations");
  EXPECT_EQ(route->allowed_methods(), "GET, OPTIONS");

  route = RouteConversationsApi("/v1/conversations/c-1");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(route->resource, ApiRoute::Resource::kConversation);
  EXPECT_EQ(route->conversation_id, "c-1");
  EXPECT_EQ(route->label(), "/v1/conversations/{id}");
  EXPECT_EQ(route->allowed_methods(), "GET, PATCH, DELETE, OPTIONS");

  route = RouteConversationsApi("/v1/conversations/c-1/messages");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(route->resource, ApiRoute::Resource::kMessages);
  EXPECT_EQ(route->conversation_id, "c-1");
  EXPECT_EQ(route->label(), "/v1/conversations/{id}/messages");
}

TEST(RouteConversationsApiTest, RefusesPathsThatNameNothing) {
  for (const char* path :
       {"/v1/conversations/", "/v1/conversations//messages", "/v1/conversations/c-1/other",
        "/v1/conversations/c-1/messages/", "/v1/conversations/c%2F1", "/v1/conversationsX"}) {
    EXPECT_FALSE(RouteConversationsApi(path).has_value()) << path;
  }
  EXPECT_FALSE(
      RouteConversationsApi(std::string("/v1/conversations/") + std::string(129, 'a')).has_value());
  EXPECT_TRUE(
      RouteConversationsApi(std::string("/v1/conversations/") + std::string(128, 'a')).has_value());
}

TEST(RouteConversationsApiTest, PrefixCoversEveryApiPathAndNothingElse) {
  EXPECT_TRUE(IsConversationsApiPath("/v1/conversations"));
  EXPECT_TRUE(IsConversationsApiPath("/v1/conversations/anything/at/all"));
  EXPECT_FALSE(IsConversationsApiPath("/v1/conversationsX"));
  EXPECT_FALSE(IsConversationsApiPath("/v1"));
  EXPECT_FALSE(IsConversationsApiPath("/ws/chat"));
}

TEST(ParseRenameBodyTest, ReturnsTheTitle) {
  absl::StatusOr<std::string> title = ParseRenameBody(R"({"title":"Trip \u2708","other":1})");
  ASSERT_TRUE(title.ok()) << title.status();
  EXPECT_EQ(*title, "Trip ✈");
}

TEST(ParseRenameBodyTest, RefusesBadBodies) {
  for (const char* body : {"", "not json", "[]", "\"title\"", "{}", R"({"title":42})",
                           R"({"title":null})", R"({"title":""})", R"({"title":"x")"}) {
    absl::StatusOr<std::string> title = ParseRenameBody(body);
    EXPECT_EQ(title.status().code(), absl::StatusCode::kInvalidArgument) << body;
  }
}

TEST(ParseRenameBodyTest, LimitsCharactersAndBytes) {
  const auto body = [](const std::string& title) { return "{\"title\":\"" + title + "\"}"; };
  EXPECT_TRUE(ParseRenameBody(body(std::string(kMaxTitleCharacters, 'a'))).ok());
  EXPECT_FALSE(ParseRenameBody(body(std::string(kMaxTitleCharacters + 1, 'a'))).ok());
  // Two-byte characters: 128 of them are 128 characters but 256 bytes.
  std::string wide;
  for (int i = 0; i < 128; ++i) {
    wide += "é";
  }
  EXPECT_TRUE(ParseRenameBody(body(wide)).ok());
  EXPECT_FALSE(ParseRenameBody(body(wide + "é")).ok());
}

TEST(ParsePageSizeTest, AcceptsNonNegativeIntegersOnly) {
  EXPECT_EQ(*ParsePageSize(""), 0);
  EXPECT_EQ(*ParsePageSize("0"), 0);
  EXPECT_EQ(*ParsePageSize("25"), 25);
  for (const char* bad : {"-1", "two", "1.5", "2147483648"}) {
    EXPECT_FALSE(ParsePageSize(bad).ok()) << bad;
  }
}

TEST(ApiJsonTest, ConversationAndMessageFields) {
  persistence_pb::Conversation conversation;
  conversation.set_id("c-1");
  conversation.set_title("Lisbon");
  conversation.mutable_create_time()->set_seconds(1714564800);  // 2024-05-01T12:00:00Z
  conversation.mutable_create_time()->set_nanos(123456789);
  conversation.mutable_update_time()->set_seconds(1714564801);
  conversation.set_user_id("never-shown");
  EXPECT_EQ(json::serialize(ConversationJson(conversation)),
            R"({"id":"c-1","title":"Lisbon","createdAt":"2024-05-01T12:00:00.123Z",)"
            R"("updatedAt":"2024-05-01T12:00:01.000Z"})");

  persistence_pb::Message message;
  message.set_id("m-2");
  message.set_parent_id("m-1");
  message.set_role(persistence_pb::ROLE_ASSISTANT);
  message.set_content("Hello");
  message.set_status(persistence_pb::MESSAGE_STATUS_INTERRUPTED);
  message.set_model("sim-small");
  message.set_finish_reason("upstream reset");
  message.set_last_seq(7);
  EXPECT_EQ(json::serialize(MessageJson(message)),
            R"({"id":"m-2","parentId":"m-1","role":"assistant","content":"Hello",)"
            R"("status":"interrupted","model":"sim-small","finishReason":"upstream reset",)"
            R"("lastSeq":7,"createdAt":""})");
}

TEST(ApiJsonTest, Rfc3339IsUtcWithMilliseconds) {
  google::protobuf::Timestamp timestamp;
  EXPECT_EQ(Rfc3339(timestamp), "");
  timestamp.set_seconds(0);
  timestamp.set_nanos(1000000);
  EXPECT_EQ(Rfc3339(timestamp), "1970-01-01T00:00:00.001Z");
}

TEST(ApiErrorTest, MapsPersistenceStatuses) {
  EXPECT_EQ(ApiResponseForStatus(absl::NotFoundError("x"), "/v1/conversations/{id}").status, 404u);
  const ApiResponse invalid =
      ApiResponseForStatus(absl::InvalidArgumentError("invalid page token"), "/v1/conversations");
  EXPECT_EQ(invalid.status, 400u);
  EXPECT_EQ(invalid.path_label, "/v1/conversations");
  EXPECT_EQ(invalid.body, R"({"error":{"code":"invalid_request","message":"invalid page token"}})");
  for (const absl::Status& status :
       {absl::UnavailableError("down"), absl::DeadlineExceededError("slow"),
        absl::InternalError("bug")}) {
    const ApiResponse answer = ApiResponseForStatus(status, "/v1/conversations");
    EXPECT_EQ(answer.status, 503u) << status;
    json::value body = json::parse(answer.body);
    EXPECT_EQ(body.at("error").at("code").as_string(), "storage_unavailable");
  }
}

}  // namespace
}  // namespace parley::edge
