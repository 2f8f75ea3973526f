// The conversations HTTP API of the real parley-edge binary: conversations made by chatting over
// a WebSocket are listed, read, paged, renamed and deleted over HTTP, only by their owner, with
// the WebSocket's authentication and origin rules.
#include <signal.h>

#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"
#include "tests/edge/auth/jwt_test_keys.h"
#include "tests/support/child_process.h"
#include "tests/support/parley_stack.h"
#include "tests/support/reply_checksum.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::edge::testing::SignHs256;
using ::parley::testing::ChildProcess;
using ::parley::testing::HttpRequest;
using ::parley::testing::HttpResponse;
using ::parley::testing::IndependentSha256;
using ::parley::testing::Int;
using ::parley::testing::ParleyStack;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

constexpr char kAllowedOrigin[] = "http://chat.parley.test";
constexpr char kSecret[] = "an-hs256-secret-of-at-least-32-bytes!!";
constexpr char kHs256Header[] = R"({"alg":"HS256","typ":"JWT"})";

json::object Body(const HttpResponse& response) {
  boost::system::error_code ec;
  json::value value = json::parse(response.body, ec);
  if (ec || !value.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << response.body;
    return {};
  }
  return std::move(value.as_object());
}

std::string ErrorCode(const HttpResponse& response) {
  const json::object body = Body(response);
  const json::value* error = body.if_contains("error");
  return error != nullptr && error->is_object() ? Str(error->as_object(), "code") : "";
}

std::string Token(const std::string& sub, const std::string& secret = kSecret) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  return SignHs256(
      kHs256Header,
      absl::StrCat(R"({"sub":")", sub, R"(","iat":)", now, R"(,"exp":)", now + 600, "}"), secret);
}

// One chat turn as the client saw it.
struct Turn {
  std::string conversation_id;
  std::string user_message_id;
  std::string assistant_message_id;
  std::string reply;
  int64_t last_seq = 0;
  std::string finish_reason;
};

// Sends `content` over a fresh WebSocket and reads the reply to its end.
Turn Chat(const std::string& address, const std::string& target, const std::string& content,
          const std::string& conversation_id = "",
          const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  Turn turn;
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(address, target, {"parley.v1"}, headers);
  if (!client.ok()) {
    ADD_FAILURE() << client.status();
    return turn;
  }
  static int next_id = 0;
  json::object message{
      {"type", "message"}, {"id", absl::StrCat("client-", ++next_id)}, {"content", content}};
  if (!conversation_id.empty()) {
    message["conversationId"] = conversation_id;
  }
  EXPECT_TRUE((*client)->SendJson(message).ok());
  while (true) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson();
    if (!frame.ok()) {
      ADD_FAILURE() << "the reply did not complete: " << frame.status();
      return turn;
    }
    const std::string type = Str(*frame, "type");
    if (type == "ack") {
      turn.conversation_id = Str(*frame, "conversationId");
      turn.user_message_id = Str(*frame, "messageId");
    } else if (type == "stream_start") {
      turn.assistant_message_id = Str(*frame, "messageId");
    } else if (type == "stream_token") {
      turn.reply += Str(*frame, "token");
    } else if (type == "stream_complete") {
      turn.last_seq = Int(*frame, "lastSeq");
      turn.finish_reason = Str(*frame, "finishReason");
      return turn;
    } else if (type == "error") {
      ADD_FAILURE() << "error frame: " << json::serialize(*frame);
      return turn;
    }
  }
}

bool IsRfc3339Utc(const std::string& time) {
  absl::Time parsed;
  std::string error;
  return absl::EndsWith(time, "Z") && absl::ParseTime(absl::RFC3339_full, time, &parsed, &error);
}

class EdgeHistoryApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ =
        ParleyStack::Start(StackOptions{
                               .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=0",
                                                   "--sim_max_tokens=12"},
                               .edge_flags = {absl::StrCat("--allowed_origins=", kAllowedOrigin)},
                           })
            .release();
  }

  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(stack_, nullptr); }

  static const std::string& edge() { return stack_->edge_address(); }

  // A request to the anonymous-mode edge as `user` (the development `userId` parameter).
  static HttpResponse Call(const std::string& method, const std::string& user,
                           const std::string& path, const std::string& query = "",
                           const std::string& body = "",
                           const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    const std::string target =
        absl::StrCat(path, "?userId=", user, query.empty() ? "" : "&", query);
    absl::StatusOr<HttpResponse> response = HttpRequest(edge(), method, target, body, headers);
    if (!response.ok()) {
      ADD_FAILURE() << method << " " << target << ": " << response.status();
      return {};
    }
    return *std::move(response);
  }

  static Turn ChatAs(const std::string& user, const std::string& content,
                     const std::string& conversation_id = "") {
    return Chat(edge(), absl::StrCat("/ws/chat?userId=", user), content, conversation_id);
  }

  static std::vector<json::object> Conversations(const std::string& user) {
    const HttpResponse response = Call("GET", user, "/v1/conversations");
    EXPECT_EQ(response.status, 200) << response.body;
    std::vector<json::object> conversations;
    const json::object body = Body(response);
    if (const json::value* list = body.if_contains("conversations"); list && list->is_array()) {
      for (const json::value& conversation : list->as_array()) {
        conversations.push_back(conversation.as_object());
      }
    }
    return conversations;
  }

  static ParleyStack* stack_;
};

ParleyStack* EdgeHistoryApiTest::stack_ = nullptr;

TEST_F(EdgeHistoryApiTest, ListsConversationsNewestFirstAndTheirMessagesOldestFirst) {
  const Turn first = ChatAs("ann", "What is the capital of Portugal?");
  const Turn second = ChatAs("ann", "And of Spain?");
  ASSERT_FALSE(first.conversation_id.empty());
  ASSERT_FALSE(second.conversation_id.empty());

  const HttpResponse list = Call("GET", "ann", "/v1/conversations");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.content_type, "application/json");
  const std::vector<json::object> conversations = Conversations("ann");
  ASSERT_EQ(conversations.size(), 2u);
  EXPECT_EQ(Str(conversations[0], "id"), second.conversation_id);
  EXPECT_EQ(Str(conversations[1], "id"), first.conversation_id);
  for (const json::object& conversation : conversations) {
    EXPECT_TRUE(conversation.contains("title"));
    EXPECT_TRUE(IsRfc3339Utc(Str(conversation, "createdAt"))) << json::serialize(conversation);
    EXPECT_TRUE(IsRfc3339Utc(Str(conversation, "updatedAt"))) << json::serialize(conversation);
  }
  EXPECT_EQ(Str(Body(list), "nextPageToken"), "");

  const HttpResponse one =
      Call("GET", "ann", absl::StrCat("/v1/conversations/", first.conversation_id));
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(Str(Body(one), "id"), first.conversation_id);

  const HttpResponse messages =
      Call("GET", "ann", absl::StrCat("/v1/conversations/", first.conversation_id, "/messages"));
  ASSERT_EQ(messages.status, 200) << messages.body;
  const json::object body = Body(messages);
  EXPECT_EQ(Str(body, "conversationId"), first.conversation_id);
  EXPECT_EQ(Str(body, "nextPageToken"), "");
  const json::array& list_of_messages = body.at("messages").as_array();
  ASSERT_EQ(list_of_messages.size(), 2u);
  const json::object& user = list_of_messages[0].as_object();
  const json::object& assistant = list_of_messages[1].as_object();
  EXPECT_EQ(Str(user, "id"), first.user_message_id);
  EXPECT_EQ(Str(user, "parentId"), "");
  EXPECT_EQ(Str(user, "role"), "user");
  EXPECT_EQ(Str(user, "content"), "What is the capital of Portugal?");
  EXPECT_EQ(Str(user, "status"), "complete");
  EXPECT_TRUE(IsRfc3339Utc(Str(user, "createdAt")));
  EXPECT_EQ(Str(assistant, "id"), first.assistant_message_id);
  EXPECT_EQ(Str(assistant, "parentId"), first.user_message_id);
  EXPECT_EQ(Str(assistant, "role"), "assistant");
  EXPECT_EQ(Str(assistant, "content"), first.reply);
  EXPECT_FALSE(first.reply.empty());
  EXPECT_EQ(Str(assistant, "status"), "complete");
  EXPECT_EQ(Str(assistant, "finishReason"), first.finish_reason);
  EXPECT_FALSE(first.finish_reason.empty());
  EXPECT_FALSE(Str(assistant, "model").empty());
  EXPECT_EQ(Int(assistant, "lastSeq"), first.last_seq);
  // Both ended messages carry the checksum of their text.
  EXPECT_EQ(Str(user, "sha256"), IndependentSha256("What is the capital of Portugal?"));
  EXPECT_EQ(Str(assistant, "sha256"), IndependentSha256(first.reply));

  // With leafMessageId: the path from the first message to that one.
  const HttpResponse path =
      Call("GET", "ann", absl::StrCat("/v1/conversations/", first.conversation_id, "/messages"),
           absl::StrCat("leafMessageId=", first.user_message_id));
  ASSERT_EQ(path.status, 200) << path.body;
  const json::object path_body = Body(path);
  const json::array& path_messages = path_body.at("messages").as_array();
  ASSERT_EQ(path_messages.size(), 1u);
  EXPECT_EQ(Str(path_messages[0].as_object(), "id"), first.user_message_id);
}

TEST_F(EdgeHistoryApiTest, SmallPagesVisitEveryConversationOnce) {
  std::set<std::string> created;
  for (int i = 0; i < 5; ++i) {
    created.insert(ChatAs("pat", absl::StrCat("message number ", i)).conversation_id);
  }
  ASSERT_EQ(created.size(), 5u);

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    const HttpResponse page =
        Call("GET", "pat", "/v1/conversations", absl::StrCat("pageSize=2&pageToken=", token));
    ASSERT_EQ(page.status, 200) << page.body;
    const json::object body = Body(page);
    const json::array& conversations = body.at("conversations").as_array();
    EXPECT_LE(conversations.size(), 2u);
    for (const json::value& conversation : conversations) {
      seen.push_back(Str(conversation.as_object(), "id"));
    }
    token = Str(body, "nextPageToken");
    ASSERT_LT(++pages, 10) << "paging does not end";
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), created);

  // Messages page the same way: one per page, user message first.
  const std::string conversation = *created.begin();
  const std::string path = absl::StrCat("/v1/conversations/", conversation, "/messages");
  const HttpResponse first_page = Call("GET", "pat", path, "pageSize=1");
  ASSERT_EQ(first_page.status, 200) << first_page.body;
  const json::object first_body = Body(first_page);
  ASSERT_EQ(first_body.at("messages").as_array().size(), 1u);
  EXPECT_EQ(Str(first_body.at("messages").as_array()[0].as_object(), "role"), "user");
  const std::string next = Str(first_body, "nextPageToken");
  ASSERT_FALSE(next.empty());
  const HttpResponse second_page =
      Call("GET", "pat", path, absl::StrCat("pageSize=1&pageToken=", next));
  ASSERT_EQ(second_page.status, 200) << second_page.body;
  const json::object second_body = Body(second_page);
  const json::array& second_messages = second_body.at("messages").as_array();
  ASSERT_EQ(second_messages.size(), 1u);
  EXPECT_EQ(Str(second_messages[0].as_object(), "role"), "assistant");

  EXPECT_EQ(Call("GET", "pat", "/v1/conversations", "pageSize=two").status, 400);
  EXPECT_EQ(ErrorCode(Call("GET", "pat", "/v1/conversations", "pageSize=-1")), "invalid_request");
  EXPECT_EQ(ErrorCode(Call("GET", "pat", "/v1/conversations", "pageToken=not-a-token")),
            "invalid_request");
}

TEST_F(EdgeHistoryApiTest, RenameShowsInTheListAndRefusesBadBodies) {
  const Turn turn = ChatAs("rene", "Plan a weekend in Lisbon");
  const std::string path = absl::StrCat("/v1/conversations/", turn.conversation_id);

  const HttpResponse renamed = Call("PATCH", "rene", path, "", R"({"title":"Lisbon ✈ weekend"})",
                                    {{"Content-Type", "application/json"}});
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(Str(Body(renamed), "id"), turn.conversation_id);
  EXPECT_EQ(Str(Body(renamed), "title"), "Lisbon ✈ weekend");
  const std::vector<json::object> conversations = Conversations("rene");
  ASSERT_EQ(conversations.size(), 1u);
  EXPECT_EQ(Str(conversations[0], "title"), "Lisbon ✈ weekend");
  EXPECT_EQ(Str(Body(Call("GET", "rene", path)), "title"), "Lisbon ✈ weekend");

  // At most 200 characters, and at most 256 bytes in UTF-8.
  const std::string longest(200, 'a');
  const std::string widest = [] {
    std::string title;
    for (int i = 0; i < 85; ++i) {
      title += "✈";  // Three bytes each: 255 in all.
    }
    return title;
  }();
  EXPECT_EQ(Call("PATCH", "rene", path, "", absl::StrCat(R"({"title":")", widest, R"("})")).status,
            200);
  EXPECT_EQ(Call("PATCH", "rene", path, "", absl::StrCat(R"({"title":")", longest, R"("})")).status,
            200);
  for (const std::string& bad :
       {std::string("not json"), std::string("[]"), std::string("{}"),
        std::string(R"({"title":42})"), std::string(R"({"title":null})"),
        std::string(R"({"title":""})"), absl::StrCat(R"({"title":")", longest, R"(a"})"),
        absl::StrCat(R"({"title":")", widest, R"(✈"})")}) {
    const HttpResponse refused = Call("PATCH", "rene", path, "", bad);
    EXPECT_EQ(refused.status, 400) << bad;
    EXPECT_EQ(ErrorCode(refused), "invalid_request") << bad;
  }
  EXPECT_EQ(Str(Body(Call("GET", "rene", path)), "title"), longest);
}

TEST_F(EdgeHistoryApiTest, DeletedConversationIsGoneEverywhere) {
  const Turn kept = ChatAs("dora", "keep me");
  const Turn deleted = ChatAs("dora", "delete me");
  const std::string path = absl::StrCat("/v1/conversations/", deleted.conversation_id);

  const HttpResponse answer = Call("DELETE", "dora", path);
  EXPECT_EQ(answer.status, 204);
  EXPECT_EQ(answer.body, "");

  const HttpResponse get = Call("GET", "dora", path);
  EXPECT_EQ(get.status, 404);
  EXPECT_EQ(ErrorCode(get), "not_found");
  EXPECT_EQ(Call("GET", "dora", absl::StrCat(path, "/messages")).status, 404);
  EXPECT_EQ(Call("DELETE", "dora", path).status, 404);
  const std::vector<json::object> conversations = Conversations("dora");
  ASSERT_EQ(conversations.size(), 1u);
  EXPECT_EQ(Str(conversations[0], "id"), kept.conversation_id);
}

TEST_F(EdgeHistoryApiTest, AnotherUserGetsNotFoundForEverything) {
  const Turn turn = ChatAs("olga", "my secret plans");
  const std::string path = absl::StrCat("/v1/conversations/", turn.conversation_id);

  for (const auto& [method, target, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", path, ""},
           {"GET", absl::StrCat(path, "/messages"), ""},
           {"PATCH", path, R"({"title":"mine now"})"},
           {"DELETE", path, ""}}) {
    const HttpResponse answer = Call(method, "mallory", target, "", body);
    EXPECT_EQ(answer.status, 404) << method << " " << target;
    EXPECT_EQ(ErrorCode(answer), "not_found") << method << " " << target;
  }
  EXPECT_TRUE(Conversations("mallory").empty());

  // The owner's conversation is untouched.
  const HttpResponse mine = Call("GET", "olga", absl::StrCat(path, "/messages"));
  ASSERT_EQ(mine.status, 200);
  const json::object mine_body = Body(mine);
  EXPECT_EQ(Str(mine_body.at("messages").as_array()[0].as_object(), "content"), "my secret plans");
  EXPECT_EQ(Call("GET", "olga", "/v1/conversations/no-such-id").status, 404);
}

TEST_F(EdgeHistoryApiTest, WrongMethodsAndPaths) {
  const HttpResponse put = Call("PUT", "walt", "/v1/conversations/some-id", "", "{}");
  EXPECT_EQ(put.status, 405);
  EXPECT_EQ(put.Header("Allow"), "GET, PATCH, DELETE, OPTIONS");
  const HttpResponse post = Call("POST", "walt", "/v1/conversations", "", "{}");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.Header("Allow"), "GET, OPTIONS");
  EXPECT_EQ(Call("DELETE", "walt", "/v1/conversations/some-id/messages").status, 405);
  EXPECT_EQ(Call("GET", "walt", "/v1/conversations/some-id/other").status, 404);
  EXPECT_EQ(Call("GET", "walt", "/v1/conversations/").status, 404);
}

TEST_F(EdgeHistoryApiTest, OriginsAndCorsPreflight) {
  const HttpResponse refused =
      Call("GET", "olive", "/v1/conversations", "", "", {{"Origin", "https://evil.test"}});
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.Header("Access-Control-Allow-Origin"), "");

  const HttpResponse allowed =
      Call("GET", "olive", "/v1/conversations", "", "", {{"Origin", kAllowedOrigin}});
  EXPECT_EQ(allowed.status, 200);
  EXPECT_EQ(allowed.Header("Access-Control-Allow-Origin"), kAllowedOrigin);

  absl::StatusOr<HttpResponse> preflight =
      HttpRequest(edge(), "OPTIONS", "/v1/conversations/some-id", "",
                  {{"Origin", kAllowedOrigin},
                   {"Access-Control-Request-Method", "PATCH"},
                   {"Access-Control-Request-Headers", "authorization, content-type"}});
  ASSERT_TRUE(preflight.ok()) << preflight.status();
  EXPECT_EQ(preflight->status, 204);
  EXPECT_EQ(preflight->Header("Access-Control-Allow-Origin"), kAllowedOrigin);
  EXPECT_TRUE(absl::StrContains(preflight->Header("Access-Control-Allow-Methods"), "PATCH"));
  EXPECT_TRUE(
      absl::StrContains(preflight->Header("Access-Control-Allow-Headers"), "Authorization"));
  EXPECT_TRUE(absl::StrContains(preflight->Header("Access-Control-Allow-Headers"), "Content-Type"));

  absl::StatusOr<HttpResponse> bad_preflight =
      HttpRequest(edge(), "OPTIONS", "/v1/conversations", "",
                  {{"Origin", "https://evil.test"}, {"Access-Control-Request-Method", "GET"}});
  ASSERT_TRUE(bad_preflight.ok()) << bad_preflight.status();
  EXPECT_EQ(bad_preflight->status, 403);
}

TEST_F(EdgeHistoryApiTest, RequestsAreCountedByRouteNotById) {
  const Turn turn = ChatAs("mia", "count me");
  ASSERT_EQ(
      Call("GET", "mia", absl::StrCat("/v1/conversations/", turn.conversation_id, "/messages"))
          .status,
      200);
  ASSERT_EQ(Call("GET", "mia", "/v1/conversations/no-such-id").status, 404);
  absl::StatusOr<HttpResponse> metrics = testing::HttpGet(edge(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_TRUE(absl::StrContains(metrics->body, R"(path="/v1/conversations/{id}/messages")"))
      << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body, R"(path="/v1/conversations/{id}")"));
  EXPECT_FALSE(absl::StrContains(metrics->body, turn.conversation_id));
  EXPECT_FALSE(absl::StrContains(metrics->body, "no-such-id"));
}

TEST_F(EdgeHistoryApiTest, JwtProtectedEdgeNeedsAValidToken) {
  const std::string secret_file = absl::StrCat(testing::MakeTempDir(), "/jwt-secret");
  std::ofstream(secret_file) << kSecret << "\n";
  std::unique_ptr<ChildProcess> edge = ChildProcess::Start(
      "parley-edge",
      {"--listen=127.0.0.1:0", absl::StrCat("--inference=", stack_->inference_address()),
       absl::StrCat("--persistence=", stack_->persistence_address()),
       absl::StrCat("--jwt_secret_file=", secret_file)});
  ASSERT_NE(edge, nullptr);
  const std::string address = edge->WaitForListening();
  ASSERT_FALSE(address.empty());

  const std::string token = Token("carol");
  const Turn turn = Chat(address, "/ws/chat", "hello with a token", "",
                         {{"Authorization", absl::StrCat("Bearer ", token)}});
  ASSERT_FALSE(turn.conversation_id.empty());

  for (const auto& [name, headers] :
       std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>{
           {"no token", {}},
           {"forged token",
            {{"Authorization", absl::StrCat("Bearer ", Token("carol", std::string(40, 'x')))}}},
           {"garbage", {{"Authorization", "Bearer not.a.token"}}}}) {
    absl::StatusOr<HttpResponse> refused =
        HttpRequest(address, "GET", "/v1/conversations?userId=carol", "", headers);
    ASSERT_TRUE(refused.ok()) << refused.status();
    EXPECT_EQ(refused->status, 401) << name;
    EXPECT_EQ(refused->Header("WWW-Authenticate"), "Bearer") << name;
    EXPECT_EQ(ErrorCode(*refused), "unauthenticated") << name;
  }

  absl::StatusOr<HttpResponse> list = HttpRequest(
      address, "GET", "/v1/conversations", "", {{"Authorization", absl::StrCat("Bearer ", token)}});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->status, 200) << list->body;
  const json::object list_body = Body(*list);
  const json::array& conversations = list_body.at("conversations").as_array();
  ASSERT_EQ(conversations.size(), 1u);
  EXPECT_EQ(Str(conversations[0].as_object(), "id"), turn.conversation_id);

  // The `token` query parameter works too, and the token's subject owns the conversation.
  absl::StatusOr<HttpResponse> messages = HttpRequest(
      address, "GET",
      absl::StrCat("/v1/conversations/", turn.conversation_id, "/messages?token=", token));
  ASSERT_TRUE(messages.ok()) << messages.status();
  EXPECT_EQ(messages->status, 200) << messages->body;
  absl::StatusOr<HttpResponse> someone_else =
      HttpRequest(address, "GET", absl::StrCat("/v1/conversations/", turn.conversation_id), "",
                  {{"Authorization", absl::StrCat("Bearer ", Token("dave"))}});
  ASSERT_TRUE(someone_else.ok()) << someone_else.status();
  EXPECT_EQ(someone_else->status, 404);
}

TEST_F(EdgeHistoryApiTest, StorageDownAnswers503) {
  // A persistence address with nothing behind it any more.
  std::unique_ptr<ChildProcess> gone = ChildProcess::Start(
      "parley-persistence", {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                             absl::StrCat("--store=sqlite:", testing::MakeTempDir(), "/gone.db")});
  ASSERT_NE(gone, nullptr);
  const std::string gone_address = gone->WaitForListening();
  ASSERT_FALSE(gone_address.empty());
  gone->Signal(SIGKILL);
  gone->Wait();

  std::unique_ptr<ChildProcess> edge = ChildProcess::Start(
      "parley-edge",
      {"--listen=127.0.0.1:0", absl::StrCat("--inference=", stack_->inference_address()),
       absl::StrCat("--persistence=", gone_address), "--allow_anonymous"});
  ASSERT_NE(edge, nullptr);
  const std::string address = edge->WaitForListening();
  ASSERT_FALSE(address.empty());
  absl::StatusOr<HttpResponse> answer = HttpRequest(address, "GET", "/v1/conversations?userId=sam");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 503);
  EXPECT_EQ(ErrorCode(*answer), "storage_unavailable");
}

}  // namespace
}  // namespace parley
