// The dialects' plain-HTTP transports (Engine.IO long-polling on /socket.io/, the agent's event
// stream on /agent/stream) against the three real binaries, over raw HTTP the way a browser
// sends it: the origin allow list and CORS, the maxPayload the Engine.IO handshake announces,
// and --max_connections for a Socket.IO session whichever transport carries it.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/integration/dialect_test_util.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

constexpr char kAllowed[] = "https://chat.example.com";
constexpr char kForeign[] = "https://evil.example.net";
constexpr char kHandshake[] = "/socket.io/?EIO=4&transport=polling";

using Headers = std::vector<std::pair<std::string, std::string>>;

HttpResponse Request(const std::string& edge, const std::string& method, const std::string& target,
                     Headers headers = {}, const std::string& body = "") {
  absl::StatusOr<HttpResponse> response = HttpRequest(edge, method, target, body, headers);
  EXPECT_TRUE(response.ok()) << method << " " << target << ": " << response.status();
  return response.ok() ? *std::move(response) : HttpResponse{};
}

// The handshake of an Engine.IO open packet ("0{…}").
json::object OpenPacket(const std::string& body) {
  if (body.empty() || body[0] != '0') {
    ADD_FAILURE() << "not an open packet: " << body;
    return {};
  }
  boost::system::error_code ec;
  json::value handshake = json::parse(body.substr(1), ec);
  EXPECT_FALSE(ec) << body;
  return ec || !handshake.is_object() ? json::object{} : handshake.as_object();
}

double HandshakesRefused(const std::string& edge, const std::string& reason) {
  const HttpResponse metrics = Request(edge, "GET", "/metrics");
  const std::string series =
      absl::StrCat("parley_edge_handshakes_refused_total{reason=\"", reason, "\"} ");
  const size_t at = metrics.body.find(series);
  return at == std::string::npos ? 0 : std::stod(metrics.body.substr(at + series.size()));
}

TEST(HttpTransportsTest, ADisallowedOriginIsRefusedOnPollingAndEventStreamsAsOnWebSocketUpgrades) {
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(StackOptions{
      .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=2000", "--sim_max_tokens=4"},
      .edge_flags = {absl::StrCat("--allowed_origins=", kAllowed)},
  });
  ASSERT_NE(stack, nullptr);
  const std::string& edge = stack->edge_address();
  const Headers foreign = {{"Origin", kForeign}};
  const std::string question = "/agent/stream?question=Hello%3F&userId=cora";

  // A page of another origin gets nothing: no session, no stream, no CORS headers.
  const HttpResponse polling = Request(edge, "GET", kHandshake, foreign);
  EXPECT_EQ(polling.status, 403);
  EXPECT_EQ(polling.body, R"({"code":4,"message":"Forbidden"})");
  EXPECT_EQ(polling.Header("Access-Control-Allow-Origin"), "");
  const HttpResponse preflight =
      Request(edge, "OPTIONS", kHandshake,
              {{"Origin", kForeign}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(preflight.status, 403);
  EXPECT_EQ(preflight.Header("Access-Control-Allow-Origin"), "");
  const HttpResponse stream = Request(edge, "GET", question, foreign);
  EXPECT_EQ(stream.status, 403);
  EXPECT_EQ(stream.Header("Access-Control-Allow-Origin"), "");
  EXPECT_FALSE(absl::StrContains(stream.body, "stream_end")) << stream.body;
  // The same as a WebSocket upgrade from that origin, on any dialect's path.
  EXPECT_EQ(UpgradeStatus(edge, "/ws/chat?userId=cora", foreign), 403);
  EXPECT_EQ(UpgradeStatus(edge, "/socket.io/?EIO=4&transport=websocket", foreign), 403);
  EXPECT_EQ(HandshakesRefused(edge, "origin"), 5);
  EXPECT_TRUE(ConversationIds(edge, "cora").empty()) << "the refused stream asked nothing";

  // A page of the allowed origin may poll and read the stream from its own origin.
  const HttpResponse allowed = Request(edge, "GET", kHandshake, {{"Origin", kAllowed}});
  EXPECT_EQ(allowed.status, 200);
  EXPECT_EQ(OpenPacket(allowed.body).at("sid").as_string().size(), 20u);
  EXPECT_EQ(allowed.Header("Access-Control-Allow-Origin"), kAllowed);
  EXPECT_EQ(allowed.Header("Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(allowed.Header("Vary"), "Origin");
  const HttpResponse allowed_preflight =
      Request(edge, "OPTIONS", kHandshake,
              {{"Origin", kAllowed},
               {"Access-Control-Request-Method", "POST"},
               {"Access-Control-Request-Headers", "authorization,content-type"}});
  EXPECT_EQ(allowed_preflight.status, 204);
  EXPECT_EQ(allowed_preflight.Header("Access-Control-Allow-Origin"), kAllowed);
  EXPECT_TRUE(absl::StrContains(allowed_preflight.Header("Access-Control-Allow-Methods"), "POST"));
  EXPECT_TRUE(
      absl::StrContains(allowed_preflight.Header("Access-Control-Allow-Headers"), "Authorization"));
  const HttpResponse allowed_stream = Request(edge, "GET", question, {{"Origin", kAllowed}});
  EXPECT_EQ(allowed_stream.status, 200);
  EXPECT_TRUE(absl::StartsWith(allowed_stream.content_type, "text/event-stream"))
      << allowed_stream.content_type;
  EXPECT_EQ(allowed_stream.Header("Access-Control-Allow-Origin"), kAllowed);
  EXPECT_TRUE(absl::StrContains(allowed_stream.body, "\"type\":\"stream_end\""))
      << allowed_stream.body;
  EXPECT_EQ(UpgradeStatus(edge, "/ws/chat?userId=cora", {{"Origin", kAllowed}}), 101);

  // A client that is no browser sends no Origin: served, without CORS headers.
  const HttpResponse native = Request(edge, "GET", kHandshake);
  EXPECT_EQ(native.status, 200);
  EXPECT_EQ(native.Header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(HandshakesRefused(edge, "origin"), 5);
}

TEST(HttpTransportsTest, TheOpenPacketAnnouncesTheMaxPayloadTheEdgeEnforces) {
  std::unique_ptr<ParleyStack> stack =
      ParleyStack::Start(StackOptions{.edge_flags = {"--max_frame_bytes=4096"}});
  ASSERT_NE(stack, nullptr);
  const std::string& edge = stack->edge_address();

  const HttpResponse handshake = Request(edge, "GET", kHandshake);
  ASSERT_EQ(handshake.status, 200);
  const json::object open = OpenPacket(handshake.body);
  EXPECT_EQ(open.at("maxPayload"), json::value(4096));
  const std::string sid(open.at("sid").as_string());
  // A WebSocket session is told the same.
  absl::StatusOr<std::unique_ptr<WsClient>> socket =
      WsClient::Connect(edge, "/socket.io/?EIO=4&transport=websocket");
  ASSERT_TRUE(socket.ok()) << socket.status();
  absl::StatusOr<std::string> ws_open = (*socket)->Read();
  ASSERT_TRUE(ws_open.ok()) << ws_open.status();
  EXPECT_EQ(OpenPacket(*ws_open).at("maxPayload"), json::value(4096));

  // A payload of exactly that size is taken; one byte more is refused and ends the session.
  const std::string target = absl::StrCat(kHandshake, "&sid=", sid);
  const std::string connect = "40/chat,";
  const std::string fits = connect + "\x1e" + "2" + std::string(4096 - connect.size() - 2, 'p');
  ASSERT_EQ(fits.size(), 4096u);
  EXPECT_EQ(Request(edge, "POST", target, {}, fits).status, 200);
  EXPECT_EQ(Request(edge, "POST", target, {}, fits + "p").status, 413);
  const HttpResponse after = Request(edge, "GET", target);
  EXPECT_EQ(after.status, 400);
  EXPECT_EQ(after.body, R"({"code":1,"message":"Session ID unknown"})");

  // Beyond the largest HTTP body the edge reads, that body is the bound.
  std::unique_ptr<ChildProcess> big_frames = stack->StartEdge({"--max_frame_bytes=1048576"});
  ASSERT_NE(big_frames, nullptr);
  const std::string big_edge = big_frames->WaitForListening();
  EXPECT_EQ(OpenPacket(Request(big_edge, "GET", kHandshake).body).at("maxPayload"),
            json::value(65536));
}

// The close code a /ws/chat WebSocket gets right after its upgrade, or 0 while it stays open
// (its ping is answered).
int ChatSocketCloseCode(const std::string& edge) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge, "/ws/chat?userId=dana", {"parley.v1"});
  if (!client.ok()) {
    ADD_FAILURE() << client.status();
    return -1;
  }
  EXPECT_TRUE((*client)->SendJson({{"type", "ping"}}).ok());
  absl::StatusOr<json::object> answer = (*client)->ReadJson();
  if (answer.ok()) {
    EXPECT_EQ(Str(*answer, "type"), "pong");
    return 0;
  }
  return (*client)->close_code();
}

TEST(HttpTransportsTest, ASocketIoSessionHoldsOneOfMaxConnectionsWhicheverTransportCarriesIt) {
  std::unique_ptr<ParleyStack> stack =
      ParleyStack::Start(StackOptions{.edge_flags = {"--max_connections=1"}});
  ASSERT_NE(stack, nullptr);
  const std::string& edge = stack->edge_address();

  // A long-polling session takes the one place.
  const HttpResponse handshake = Request(edge, "GET", kHandshake);
  ASSERT_EQ(handshake.status, 200);
  const std::string sid(OpenPacket(handshake.body).at("sid").as_string());
  EXPECT_EQ(ChatSocketCloseCode(edge), 1013);
  const HttpResponse second = Request(edge, "GET", kHandshake);
  EXPECT_EQ(second.status, 503);
  EXPECT_EQ(HandshakesRefused(edge, "too_many_connections"), 2);

  // Upgraded to a WebSocket, it still holds it.
  absl::StatusOr<std::unique_ptr<WsClient>> upgraded =
      WsClient::Connect(edge, absl::StrCat("/socket.io/?EIO=4&transport=websocket&sid=", sid));
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  ASSERT_TRUE((*upgraded)->Send("2probe").ok());
  absl::StatusOr<std::string> probe = (*upgraded)->Read();
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(*probe, "3probe");
  ASSERT_TRUE((*upgraded)->Send("5").ok());
  // The namespace CONNECT answered over the WebSocket shows the upgrade is done: polling is over
  // for this session.
  ASSERT_TRUE((*upgraded)->Send("40/chat,").ok());
  absl::StatusOr<std::string> connected = (*upgraded)->Read();
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_TRUE(absl::StartsWith(*connected, "40/chat,{\"sid\":")) << *connected;
  const HttpResponse poll = Request(edge, "GET", absl::StrCat(kHandshake, "&sid=", sid));
  EXPECT_EQ(poll.status, 400);
  EXPECT_EQ(ChatSocketCloseCode(edge), 1013);

  // The client ends the session (an Engine.IO close packet): its place is free again once the
  // edge closes the WebSocket.
  ASSERT_TRUE((*upgraded)->Send("1").ok());
  absl::StatusOr<std::string> end = (*upgraded)->Read();
  while (end.ok()) {
    end = (*upgraded)->Read();
  }
  EXPECT_EQ(end.status().code(), absl::StatusCode::kFailedPrecondition) << end.status();
  EXPECT_EQ(ChatSocketCloseCode(edge), 0);
}

}  // namespace
}  // namespace parley::testing
