// A stranger's worst bytes against the real binaries: handshakes sent a byte at a time,
// thousands of connections opened and dropped, oversized headers, URLs and frames, hostile JSON
// and hostile text in every field a client can store. Each case checks that the edge still
// serves others and that what was stored is intact.
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/raw_websocket.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::EncodeFrame;
using ::parley::testing::HttpGet;
using ::parley::testing::HttpRequest;
using ::parley::testing::Int;
using ::parley::testing::OpenRawWebSocket;
using ::parley::testing::ParleyStack;
using ::parley::testing::RawSocket;
using ::parley::testing::ReadCloseCode;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::UpgradeRequest;
using ::parley::testing::WsClient;
namespace op = ::parley::testing::ws_opcode;

// The edge answers a newcomer's whole chat turn.
void ExpectServesOthers(const std::string& address) {
  absl::StatusOr<std::unique_ptr<WsClient>> other =
      WsClient::Connect(address, "/ws/chat?userId=bystander");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)
                  ->SendJson(json::object{{"type", "message"},
                                          {"id", absl::StrCat("bystander-", rand())},
                                          {"content", "still there?"}})
                  .ok());
  EXPECT_TRUE(ReadUntil(**other, "stream_complete").has_value());
}

// At most `max_bytes` of `text`, cut before a character rather than inside one.
std::string Utf8Prefix(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return text.substr(0, cut);
}

// Lets this process (and the edge it starts) have as many descriptors as the system allows.
size_t RaiseDescriptorLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  return static_cast<size_t>(limit.rlim_cur);
}

class EdgeAbuseTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> edge_flags = {}) {
    StackOptions options;
    options.inference_flags = {"--sim_ttft_ms=1", "--sim_max_tokens=4"};
    options.edge_flags = std::move(edge_flags);
    options.edge_flags.push_back("--connection_messages_per_minute=0");
    options.edge_flags.push_back("--user_messages_per_minute=0");
    stack_ = ParleyStack::Start(options);
    ASSERT_NE(stack_, nullptr);
    address_ = stack_->edge_address();
  }

  std::unique_ptr<WsClient> Connect(const std::string& user) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(address_, absl::StrCat("/ws/chat?userId=", user));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::unique_ptr<ParleyStack> stack_;
  std::string address_;
};

TEST_F(EdgeAbuseTest, SlowlorisHandshakesAreCutAtTheHandshakeTimeoutAndCostOthersNothing) {
  Start({"--handshake_timeout_ms=2000"});
  constexpr int kSlow = 200;
  std::vector<std::unique_ptr<RawSocket>> slow;
  const std::string request = UpgradeRequest("/ws/chat?userId=slow");
  for (int i = 0; i < kSlow; ++i) {
    absl::StatusOr<std::unique_ptr<RawSocket>> socket = RawSocket::Connect(address_);
    ASSERT_TRUE(socket.ok()) << socket.status();
    // A few bytes of the request, never its end.
    ASSERT_TRUE((*socket)->Write(request.substr(0, 10 + i % 40)).ok());
    slow.push_back(*std::move(socket));
  }
  // While they dawdle, a real client is served in full.
  ExpectServesOthers(address_);
  // Each is cut by the edge, unanswered, once its handshake time is up.
  for (int i = 0; i < kSlow; ++i) {
    EXPECT_TRUE(slow[i]->WaitForClose(absl::Seconds(60))) << i;
  }
  ExpectServesOthers(address_);
}

TEST_F(EdgeAbuseTest, TenThousandConnectionsOpenedAndDroppedLeaveTheEdgeServing) {
  const size_t descriptors = RaiseDescriptorLimit();
  Start();
  // Connections open at once; the rest of the 10,000 come in later waves.
  const size_t wave = std::min<size_t>(1000, descriptors / 4);
  constexpr size_t kTotal = 10000;
  size_t opened = 0;
  while (opened < kTotal) {
    std::vector<std::unique_ptr<RawSocket>> sockets;
    for (size_t i = 0; i < wave && opened < kTotal; ++i, ++opened) {
      absl::StatusOr<std::unique_ptr<RawSocket>> socket = RawSocket::Connect(address_);
      ASSERT_TRUE(socket.ok()) << "connection " << opened << ": " << socket.status();
      // Dropped at every stage: before a byte, mid-request, after a whole upgrade request.
      switch (opened % 3) {
        case 1:
          ASSERT_TRUE((*socket)->Write("GET /ws/chat?userId=churn HTTP/1.1\r\nHo").ok());
          break;
        case 2:
          ASSERT_TRUE((*socket)->Write(UpgradeRequest("/ws/chat?userId=churn")).ok());
          break;
        default:
          break;
      }
      sockets.push_back(*std::move(socket));
    }
  }
  EXPECT_EQ(opened, kTotal);
  ExpectServesOthers(address_);
  absl::StatusOr<testing::HttpResponse> health = HttpGet(address_, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
}

TEST_F(EdgeAbuseTest, OversizedHeadersUrlsAndFramesGetClearRefusals) {
  Start({"--max_frame_bytes=65536"});
  // A URL and a header past the 8 KiB the edge reads: 431, then the connection ends.
  for (const std::string& request : {absl::StrCat("GET /ws/chat?userId=", std::string(20000, 'u'),
                                                  " HTTP/1.1\r\nHost: x\r\n\r\n"),
                                     absl::StrCat("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
                                                  std::string(20000, 'h'), "\r\n\r\n"),
                                     absl::StrCat(
                                         "GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                         [] {
                                           std::string many;
                                           for (int i = 0; i < 2000; ++i) {
                                             absl::StrAppend(&many, "X-", i, ": v\r\n");
                                           }
                                           return many;
                                         }(),
                                         "\r\n")}) {
    absl::StatusOr<std::unique_ptr<RawSocket>> socket = RawSocket::Connect(address_);
    ASSERT_TRUE(socket.ok()) << socket.status();
    ASSERT_TRUE((*socket)->Write(request).ok());
    absl::StatusOr<std::string> head = (*socket)->ReadHttpHead();
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_TRUE(absl::StartsWith(*head, "HTTP/1.1 431")) << *head;
    EXPECT_TRUE((*socket)->WaitForClose());
  }
  // A body past 64 KiB on the HTTP API: 413.
  absl::StatusOr<testing::HttpResponse> big_body =
      HttpRequest(address_, "PATCH", "/v1/conversations/0123456789abcdef0123456789abcdef?userId=u",
                  std::string(100 * 1024, 'b'), {{"Content-Type", "application/json"}});
  ASSERT_TRUE(big_body.ok()) << big_body.status();
  EXPECT_EQ(big_body->status, 413);
  // A frame whose header claims 2^63 - 1 bytes is refused before any of it is read.
  {
    absl::StatusOr<std::unique_ptr<RawSocket>> socket =
        OpenRawWebSocket(address_, "/ws/chat?userId=huge");
    ASSERT_TRUE(socket.ok()) << socket.status();
    std::string header = "\x81\xff";
    header += std::string("\x7f\xff\xff\xff\xff\xff\xff\xff", 8);
    header += std::string("\x01\x02\x03\x04", 4);
    ASSERT_TRUE((*socket)->Write(header).ok());
    absl::StatusOr<int> code = ReadCloseCode(**socket);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 1009);
  }
  ExpectServesOthers(address_);
}

TEST_F(EdgeAbuseTest, HostileJsonIsAnsweredWithAnErrorAndTheConnectionStaysUsable) {
  Start();
  std::unique_ptr<WsClient> client = Connect("json-user");
  ASSERT_NE(client, nullptr);
  std::string deep_array;
  for (int i = 0; i < 20000; ++i) {
    deep_array += '[';
  }
  std::string deep_object = R"({"type":"message","id":"deep","content":"x","model":)";
  for (int i = 0; i < 10000; ++i) {
    deep_object += R"({"a":)";
  }
  struct Case {
    std::string frame;
    std::vector<std::string> codes;  // what the answer's code may be
  };
  for (const Case& c : std::vector<Case>{
           {deep_array, {"invalid_json"}},
           {deep_object, {"invalid_json"}},
           // Escapes of lone surrogates decode to no Unicode character at all.
           {R"({"type":"message","id":"s1","content":"\ud800"})",
            {"invalid_json", "invalid_frame"}},
           {R"({"type":"message","id":"s2","content":"\udc00x"})",
            {"invalid_json", "invalid_frame"}},
           {R"({"type":"message","id":"s3","content":"\ud800\u0041"})",
            {"invalid_json", "invalid_frame"}},
           // Numbers past what the fields hold.
           {R"({"type":"resume","messageId":"m","lastSeq":1e400})",
            {"invalid_json", "invalid_frame"}},
           {R"({"type":"resume","messageId":"m","lastSeq":18446744073709551616})",
            {"invalid_json", "invalid_frame"}},
           {R"({"type":"resume","messageId":"m","lastSeq":-9007199254740993})", {"invalid_frame"}},
           {R"({"type":"message","id":"n1","content":"x","deadlineMs":1e400})",
            {"invalid_json", "invalid_frame"}},
           {R"({"type":"message","id":"n2","content":"x","deadlineMs":9007199254740993.5})",
            {"invalid_frame"}},
           {R"({"type":"history","pageSize":9007199254740993})", {"invalid_frame"}},
           {R"({"type":"messages","conversationId":"c","pageSize":-1})", {"invalid_frame"}},
           // Types where strings belong.
           {R"({"type":"message","id":7,"content":"x"})", {"invalid_frame"}},
           {R"({"type":"message","id":"t","content":["x"]})", {"invalid_frame"}},
           {R"({"type":{"nested":true}})", {"invalid_frame"}},
           {R"("just a string")", {"invalid_frame"}},
           {R"({"type":"ping"} trailing)", {"invalid_json"}},
       }) {
    SCOPED_TRACE(c.frame.substr(0, 80));
    ASSERT_TRUE(client->Send(c.frame).ok());
    absl::StatusOr<json::object> answer = client->ReadJson();
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(Str(*answer, "type"), "error") << json::serialize(*answer);
    EXPECT_NE(std::find(c.codes.begin(), c.codes.end(), Str(*answer, "code")), c.codes.end())
        << json::serialize(*answer);
  }
  // A duplicate key: the last one counts (as in JavaScript's JSON.parse), so this is a ping.
  ASSERT_TRUE(client->Send(R"({"type":"message","type":"ping"})").ok());
  absl::StatusOr<json::object> pong = client->ReadJson();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(Str(*pong, "type"), "pong") << json::serialize(*pong);
  // Nothing of the above was stored, and the connection still chats.
  ASSERT_TRUE(client->Send(R"({"type":"history"})").ok());
  std::optional<json::object> history = ReadUntil(*client, "history");
  ASSERT_TRUE(history.has_value());
  EXPECT_TRUE(history->at("conversations").as_array().empty()) << json::serialize(*history);
  ExpectServesOthers(address_);
}

TEST_F(EdgeAbuseTest, HostileTextIsStoredByteExactOrRefusedAsDocumented) {
  Start();
  std::string big;
  while (big.size() < 60 * 1024) {
    big += "'; DROP TABLE messages; -- %_\\ e\u0301 \u05e9\u05dc\u05d5\u05dd \u202e\U0001F600 ";
  }
  const std::vector<std::string> texts = {"'; DROP TABLE conversations; --",
                                          "%",
                                          "_",
                                          "a%b_c\\%\\_",
                                          "\"quoted\" \\ back\\slash",
                                          "e\u0301\u0302 Z\u0351\u0352",
                                          "\u0645\u0631\u062d\u0628\u0627 \u202eabc\u202c",
                                          "\U0001F468\u200D\U0001F469\u200D\U0001F467",
                                          big};
  std::unique_ptr<WsClient> client = Connect("text-user");
  ASSERT_NE(client, nullptr);
  int index = 0;
  for (const std::string& text : texts) {
    SCOPED_TRACE(text.substr(0, 40));
    ++index;
    // The text as the content, its start as the client's id and the conversation's name.
    const std::string name = Utf8Prefix(text, 100);
    ASSERT_TRUE(client
                    ->SendJson(json::object{{"type", "message"},
                                            {"id", absl::StrCat(index, name)},
                                            {"conversationId", absl::StrCat("n", index, name)},
                                            {"content", text}})
                    .ok());
    std::optional<json::object> ack = ReadUntil(*client, "ack");
    ASSERT_TRUE(ack.has_value());
    EXPECT_EQ(Str(*ack, "id"), absl::StrCat(index, name));
    EXPECT_EQ(Str(*ack, "conversationId"), absl::StrCat("n", index, name));
    ASSERT_TRUE(ReadUntil(*client, "stream_complete").has_value());
    ASSERT_TRUE(client
                    ->SendJson(json::object{{"type", "history"},
                                            {"conversationId", absl::StrCat("n", index, name)}})
                    .ok());
    std::optional<json::object> history = ReadUntil(*client, "history");
    ASSERT_TRUE(history.has_value());
    const json::array& messages = history->at("messages").as_array();
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(Str(messages[0].as_object(), "content"), text);
  }
  // Renaming through the HTTP API with the same texts (titles are at most 256 bytes).
  absl::StatusOr<testing::HttpResponse> list =
      HttpGet(address_, "/v1/conversations?userId=text-user&pageSize=100");
  ASSERT_TRUE(list.ok()) << list.status();
  const json::array conversations =
      json::parse(list->body).as_object().at("conversations").as_array();
  ASSERT_EQ(conversations.size(), texts.size());
  const std::string id = Str(conversations[0].as_object(), "id");
  for (const std::string& text : texts) {
    SCOPED_TRACE(text.substr(0, 40));
    const std::string title = Utf8Prefix(text, 200);
    absl::StatusOr<testing::HttpResponse> renamed = HttpRequest(
        address_, "PATCH", absl::StrCat("/v1/conversations/", id, "?userId=text-user"),
        json::serialize(json::object{{"title", title}}), {{"Content-Type", "application/json"}});
    ASSERT_TRUE(renamed.ok()) << renamed.status();
    ASSERT_EQ(renamed->status, 200) << renamed->body;
    absl::StatusOr<testing::HttpResponse> got =
        HttpGet(address_, absl::StrCat("/v1/conversations/", id, "?userId=text-user"));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Str(json::parse(got->body).as_object(), "title"), title);
  }
  absl::StatusOr<testing::HttpResponse> long_title =
      HttpRequest(address_, "PATCH", absl::StrCat("/v1/conversations/", id, "?userId=text-user"),
                  json::serialize(json::object{{"title", std::string(257, 't')}}),
                  {{"Content-Type", "application/json"}});
  ASSERT_TRUE(long_title.ok()) << long_title.status();
  EXPECT_EQ(long_title->status, 400) << long_title->body;
  // Past the documented limits: a clear refusal, and nothing stored.
  const std::string long_id(129, 'i');
  ASSERT_TRUE(
      client->SendJson(json::object{{"type", "message"}, {"id", long_id}, {"content", "x"}}).ok());
  std::optional<json::object> refused = ReadUntil(*client, "error");
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(Str(*refused, "code"), "invalid_frame") << json::serialize(*refused);
  ASSERT_TRUE(client
                  ->SendJson(json::object{{"type", "message"},
                                          {"id", "long-name"},
                                          {"conversationId", std::string(129, 'n')},
                                          {"content", "x"}})
                  .ok());
  refused = ReadUntil(*client, "error");
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(Str(*refused, "code"), "invalid_frame") << json::serialize(*refused);
  ASSERT_TRUE(client
                  ->SendJson(json::object{
                      {"type", "message"}, {"id", "nul"}, {"content", std::string("a\0b", 3)}})
                  .ok());
  refused = ReadUntil(*client, "error");
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(Str(*refused, "code"), "invalid_frame") << json::serialize(*refused);
  list = HttpGet(address_, "/v1/conversations?userId=text-user&pageSize=100");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(json::parse(list->body).as_object().at("conversations").as_array().size(),
            texts.size());
  ExpectServesOthers(address_);
}

}  // namespace
}  // namespace parley
