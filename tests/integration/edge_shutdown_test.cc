// What clients of the real parley-edge get when it is told to stop (SIGTERM): a client still
// sending its WebSocket handshake gets its upgrade and then 1001 like every open socket, and a
// reply that outlasts the drain grace period is cut, stored with what was streamed, and can be
// resumed on another edge.
#include <csignal>
#include <memory>
#include <optional>
#include <string>

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
using ::parley::testing::ChildProcess;
using ::parley::testing::HttpGet;
using ::parley::testing::Int;
using ::parley::testing::ParleyStack;
using ::parley::testing::RawSocket;
using ::parley::testing::ReadCloseCode;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::UpgradeRequest;
using ::parley::testing::WsClient;

TEST(EdgeShutdownTest, ASocketStillInItsHandshakeAtSigtermGetsItsUpgradeAndThen1001) {
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start();
  ASSERT_NE(stack, nullptr);
  const std::string address = stack->edge_address();

  // Half of an upgrade request: everything but the blank line that ends it.
  absl::StatusOr<std::unique_ptr<RawSocket>> slow = RawSocket::Connect(address);
  ASSERT_TRUE(slow.ok()) << slow.status();
  const std::string request = UpgradeRequest("/ws/chat?userId=late");
  ASSERT_TRUE((*slow)->Write(request.substr(0, request.size() - 2)).ok());
  // Connections are accepted in order: once a later one is answered, the half-sent one is the
  // edge's too.
  absl::StatusOr<testing::HttpResponse> health = HttpGet(address, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  ASSERT_EQ(health->status, 200);

  stack->edge().Signal(SIGTERM);
  ASSERT_FALSE(stack->edge().WaitForLine("shutting down").empty());
  ASSERT_TRUE((*slow)->Write("\r\n").ok());
  absl::StatusOr<std::string> head = (*slow)->ReadHttpHead();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_TRUE(absl::StartsWith(*head, "HTTP/1.1 101")) << *head;
  absl::StatusOr<int> code = ReadCloseCode(**slow);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1001);
  (*slow)->Write(testing::EncodeFrame(testing::ws_opcode::kClose, testing::ClosePayload(1001)))
      .IgnoreError();
  EXPECT_EQ(stack->edge().Wait(), 0);
}

TEST(EdgeShutdownTest, AnIdleKeepAliveConnectionDoesNotHoldUpShutdown) {
  StackOptions options;
  options.edge_flags = {"--handshake_timeout_ms=3600000"};
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(options);
  ASSERT_NE(stack, nullptr);
  absl::StatusOr<std::unique_ptr<RawSocket>> idle = RawSocket::Connect(stack->edge_address());
  ASSERT_TRUE(idle.ok()) << idle.status();
  ASSERT_TRUE((*idle)->Write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok());
  absl::StatusOr<std::string> head = (*idle)->ReadHttpHead();
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_TRUE(absl::StartsWith(*head, "HTTP/1.1 200")) << *head;

  // The edge closes the kept-alive connection itself rather than waiting out its handshake
  // timeout (an hour here), so the process exits.
  stack->edge().Signal(SIGTERM);
  EXPECT_TRUE((*idle)->WaitForClose(absl::Seconds(30)));
  EXPECT_EQ(stack->edge().Wait(), 0);
}

TEST(EdgeShutdownTest, AReplyOutlastingTheDrainGraceIsCutStoredAndResumableElsewhere) {
  StackOptions options;
  // A reply of about 40 s; the drain grace is half a second.
  options.inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=5",
                             "--sim_max_tokens=200"};
  options.edge_flags = {"--drain_grace_ms=500"};
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(options);
  ASSERT_NE(stack, nullptr);
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(stack->edge_address(), "/ws/chat?userId=grace-user");
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)
                  ->SendJson(json::object{
                      {"type", "message"}, {"id", "grace-1"}, {"content", "Tell me a long story."}})
                  .ok());
  std::optional<json::object> start = ReadUntil(**client, "stream_start");
  ASSERT_TRUE(start.has_value());
  const std::string message_id = Str(*start, "messageId");
  std::string seen;
  int64_t last_seq = 0;
  while (last_seq < 2) {
    std::optional<json::object> token = ReadUntil(**client, "stream_token");
    ASSERT_TRUE(token.has_value());
    seen += Str(*token, "token");
    last_seq = Int(*token, "seq");
  }

  stack->edge().Signal(SIGTERM);
  // What the client gets: the tokens sent until the grace ran out, then 1001 (no end frame: the
  // socket closed first). Nothing else.
  while (true) {
    absl::StatusOr<json::object> frame = (*client)->ReadJson();
    if (!frame.ok()) {
      break;
    }
    ASSERT_EQ(Str(*frame, "type"), "stream_token") << json::serialize(*frame);
    EXPECT_GT(Int(*frame, "seq"), last_seq);
    seen += Str(*frame, "token");
    last_seq = Int(*frame, "seq");
  }
  EXPECT_EQ((*client)->close_code(), 1001);
  EXPECT_EQ(stack->edge().Wait(), 0);

  // On another edge the reply has ended (cut by the shutdown, not left streaming), and a resume
  // from the last seq the client saw gives the rest of the stored text and that end.
  std::unique_ptr<ChildProcess> other = stack->StartEdge();
  ASSERT_NE(other, nullptr);
  const std::string other_address = other->WaitForListening();
  absl::StatusOr<std::unique_ptr<WsClient>> again =
      WsClient::Connect(other_address, "/ws/chat?userId=grace-user");
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)
                  ->SendJson(json::object{
                      {"type", "resume"}, {"messageId", message_id}, {"lastSeq", last_seq}})
                  .ok());
  std::optional<json::object> resumed = ReadUntil(**again, "resumed");
  ASSERT_TRUE(resumed.has_value());
  ASSERT_TRUE(resumed->at("recovered").as_bool());
  std::string rest;
  std::optional<json::object> end;
  while (!end.has_value()) {
    absl::StatusOr<json::object> frame = (*again)->ReadJson();
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::string type = Str(*frame, "type");
    if (type == "stream_token") {
      rest += Str(*frame, "token");
    } else {
      end = *frame;
    }
  }
  EXPECT_EQ(Str(*end, "type"), "stream_cancelled") << json::serialize(*end);

  absl::StatusOr<testing::HttpResponse> stored =
      HttpGet(other_address, absl::StrCat("/v1/conversations/", Str(*start, "conversationId"),
                                          "/messages?userId=grace-user"));
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->status, 200) << stored->body;
  const json::array messages = json::parse(stored->body).as_object().at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);
  const json::object& reply = messages[1].as_object();
  EXPECT_EQ(Str(reply, "status"), "cancelled");
  EXPECT_EQ(Str(reply, "content"), seen + rest);
  EXPECT_EQ(Int(reply, "lastSeq"), Int(*end, "lastSeq"));
}

}  // namespace
}  // namespace parley
