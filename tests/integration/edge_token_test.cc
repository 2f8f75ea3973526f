// Tokens over the life of a connection, against the real parley-edge: a connection ends (error
// token_expired, close 4401) when its token expires unless the client sent a fresh one (`auth`),
// in every dialect (Socket.IO's session ends, the agent's event stream ends too);
// the JWKS file is read off the connections' threads; hostile tokens (overflowing or wrongly
// typed times, control characters in `sub`) are refused and cost the edge nothing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"
#include "tests/edge/auth/jwt_test_keys.h"
#include "tests/support/child_process.h"
#include "tests/support/raw_websocket.h"
#include "tests/support/sse_client.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::edge::testing::GenerateRsaKey;
using ::parley::edge::testing::PublicJwk;
using ::parley::edge::testing::SignHs256;
using ::parley::edge::testing::SignRs256;
using ::parley::edge::testing::TestKey;
using ::parley::testing::ChildProcess;
using ::parley::testing::OpenRawWebSocket;
using ::parley::testing::RawSocket;
using ::parley::testing::ReadUntil;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

constexpr char kSecret[] = "an-hs256-secret-of-at-least-32-bytes!!";
constexpr char kHs256Header[] = R"({"alg":"HS256","typ":"JWT"})";

int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

std::string Token(const std::string& sub, int64_t exp) {
  return SignHs256(kHs256Header, absl::StrCat(R"({"sub":")", sub, R"(","exp":)", exp, "}"),
                   kSecret);
}

class EdgeTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_dir_ = new std::string(testing::MakeTempDir());
    persistence_ = ChildProcess::Start("parley-persistence",
                                       {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                                        absl::StrCat("--store=sqlite:", *data_dir_, "/parley.db")})
                       .release();
    inference_ =
        ChildProcess::Start("parley-inference",
                            {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                             "--engine=simulated", "--sim_ttft_ms=1", "--sim_max_tokens=5"})
            .release();
    persistence_address_ = new std::string(persistence_->WaitForListening());
    inference_address_ = new std::string(inference_->WaitForListening());
    secret_file_ = new std::string(absl::StrCat(*data_dir_, "/jwt-secret"));
    std::ofstream(*secret_file_) << kSecret << "\n";
  }
  static void TearDownTestSuite() {
    delete persistence_;
    delete inference_;
  }

  // An edge with no clock skew, so a token stops at its exp.
  std::unique_ptr<ChildProcess> StartEdge(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--listen=127.0.0.1:0", absl::StrCat("--inference=", *inference_address_),
        absl::StrCat("--persistence=", *persistence_address_), "--jwt_clock_skew=0s"};
    if (extra.empty()) {
      extra.push_back(absl::StrCat("--jwt_secret_file=", *secret_file_));
    }
    args.insert(args.end(), extra.begin(), extra.end());
    std::unique_ptr<ChildProcess> edge = ChildProcess::Start("parley-edge", args);
    if (edge != nullptr) {
      address_ = edge->WaitForListening();
    }
    return edge;
  }

  std::unique_ptr<WsClient> Connect(const std::string& target) {
    absl::StatusOr<std::unique_ptr<WsClient>> client = WsClient::Connect(address_, target);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // The edge still serves a newcomer with a good token.
  void ExpectServesOthers() {
    std::unique_ptr<WsClient> other =
        Connect(absl::StrCat("/ws/chat?token=", Token("bystander", NowSeconds() + 600)));
    ASSERT_NE(other, nullptr);
    ASSERT_TRUE(other->Send(R"({"type":"ping"})").ok());
    EXPECT_TRUE(ReadUntil(*other, "pong").has_value());
  }

  static std::string* data_dir_;
  static ChildProcess* persistence_;
  static ChildProcess* inference_;
  static std::string* persistence_address_;
  static std::string* inference_address_;
  static std::string* secret_file_;
  std::string address_;
};

std::string* EdgeTokenTest::data_dir_ = nullptr;
ChildProcess* EdgeTokenTest::persistence_ = nullptr;
ChildProcess* EdgeTokenTest::inference_ = nullptr;
std::string* EdgeTokenTest::persistence_address_ = nullptr;
std::string* EdgeTokenTest::inference_address_ = nullptr;
std::string* EdgeTokenTest::secret_file_ = nullptr;

TEST_F(EdgeTokenTest, AConnectionEndsWhenItsTokenExpires) {
  std::unique_ptr<ChildProcess> edge = StartEdge();
  ASSERT_FALSE(address_.empty());
  const int64_t exp = NowSeconds() + 2;
  std::unique_ptr<WsClient> client = Connect(absl::StrCat("/ws/chat?token=", Token("ann", exp)));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send(R"({"type":"ping"})").ok());
  ASSERT_TRUE(ReadUntil(*client, "pong").has_value());

  // Told why in the protocol, then closed with the documented code.
  absl::StatusOr<json::object> error = client->ReadJson(absl::Seconds(30));
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(Str(*error, "type"), "error");
  EXPECT_EQ(Str(*error, "code"), "token_expired");
  EXPECT_FALSE(client->Read(absl::Seconds(30)).ok());
  EXPECT_EQ(client->close_code(), 4401);
  EXPECT_GE(absl::Now(), absl::FromUnixSeconds(exp));
  ExpectServesOthers();
}

TEST_F(EdgeTokenTest, AFreshTokenKeepsTheConnectionUntilItsOwnExpiry) {
  std::unique_ptr<ChildProcess> edge = StartEdge();
  ASSERT_FALSE(address_.empty());
  const int64_t first_exp = NowSeconds() + 2;
  std::unique_ptr<WsClient> client =
      Connect(absl::StrCat("/ws/chat?token=", Token("bea", first_exp)));
  ASSERT_NE(client, nullptr);

  // Refused renewals change nothing and say why: another user's token, an expired one, garbage.
  for (const std::string& bad : {Token("mallory", NowSeconds() + 600),
                                 Token("bea", NowSeconds() - 60), std::string("not-a-jwt")}) {
    ASSERT_TRUE(client->SendJson(json::object{{"type", "auth"}, {"token", bad}}).ok());
    std::optional<json::object> refused = ReadUntil(*client, "error");
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(Str(*refused, "code"), "unauthenticated") << json::serialize(*refused);
  }
  ASSERT_TRUE(client->SendJson(json::object{{"type", "auth"}}).ok());
  std::optional<json::object> invalid = ReadUntil(*client, "error");
  ASSERT_TRUE(invalid.has_value());
  EXPECT_EQ(Str(*invalid, "code"), "invalid_frame");

  const int64_t second_exp = first_exp + 3;
  ASSERT_TRUE(
      client->SendJson(json::object{{"type", "auth"}, {"token", Token("bea", second_exp)}}).ok());
  std::optional<json::object> renewed = ReadUntil(*client, "authenticated");
  ASSERT_TRUE(renewed.has_value());
  absl::Time expires_at;
  std::string parse_error;
  ASSERT_TRUE(
      absl::ParseTime(absl::RFC3339_full, Str(*renewed, "expiresAt"), &expires_at, &parse_error))
      << parse_error;
  EXPECT_EQ(expires_at, absl::FromUnixSeconds(second_exp));

  // The connection outlives the first token and ends with the second.
  std::optional<json::object> expired = ReadUntil(*client, "error");
  ASSERT_TRUE(expired.has_value());
  EXPECT_EQ(Str(*expired, "code"), "token_expired");
  EXPECT_FALSE(client->Read(absl::Seconds(30)).ok());
  EXPECT_EQ(client->close_code(), 4401);
  EXPECT_GE(absl::Now(), absl::FromUnixSeconds(second_exp));
  ExpectServesOthers();
}

// Seed 001's copilot hook: "Expired token → Connection closed".
TEST_F(EdgeTokenTest, TheCopilotDialectClosesOnExpiryToo) {
  std::unique_ptr<ChildProcess> edge = StartEdge();
  ASSERT_FALSE(address_.empty());
  const int64_t exp = NowSeconds() + 2;
  std::unique_ptr<WsClient> client =
      Connect(absl::StrCat("/copilot?userId=cid&token=", Token("cid", exp)));
  ASSERT_NE(client, nullptr);
  while (true) {
    absl::StatusOr<std::string> frame = client->Read(absl::Seconds(30));
    if (!frame.ok()) {
      break;
    }
  }
  EXPECT_EQ(client->close_code(), 4401);
  EXPECT_GE(absl::Now(), absl::FromUnixSeconds(exp));
  ExpectServesOthers();
}

// Socket.IO, as docs/dialects/socketio.md says: `chat:error` saying the token expired, then the
// Engine.IO session ends (a WebSocket with 4401, a polling client with a close packet), so
// socket.io-client reconnects with fresh `auth`.
TEST_F(EdgeTokenTest, ASocketIoSessionEndsWhenItsTokenExpires) {
  std::unique_ptr<ChildProcess> edge = StartEdge();
  ASSERT_FALSE(address_.empty());

  // Over a WebSocket alone.
  const int64_t exp = NowSeconds() + 2;
  std::unique_ptr<WsClient> socket = Connect("/socket.io/?EIO=4&transport=websocket");
  ASSERT_NE(socket, nullptr);
  absl::StatusOr<std::string> open = socket->Read();
  ASSERT_TRUE(open.ok()) << open.status();
  ASSERT_TRUE(absl::StartsWith(*open, "0{")) << *open;
  ASSERT_TRUE(socket->Send(absl::StrCat(R"(40/chat,{"token":")", Token("sio", exp), R"("})")).ok());
  absl::StatusOr<std::string> connected = socket->Read();
  ASSERT_TRUE(connected.ok()) << connected.status();
  ASSERT_TRUE(absl::StartsWith(*connected, R"(40/chat,{"sid":")")) << *connected;
  std::vector<std::string> packets;
  while (true) {
    absl::StatusOr<std::string> packet = socket->Read(absl::Seconds(30));
    if (!packet.ok()) {
      break;
    }
    packets.push_back(*packet);
  }
  ASSERT_EQ(packets.size(), 1u) << absl::StrJoin(packets, " | ");
  EXPECT_TRUE(absl::StartsWith(packets[0], R"(42/chat,["chat:error",{)")) << packets[0];
  EXPECT_TRUE(absl::StrContains(packets[0], "token expired")) << packets[0];
  EXPECT_EQ(socket->close_code(), 4401);
  EXPECT_GE(absl::Now(), absl::FromUnixSeconds(exp));

  // Over long-polling: the poll that is waiting gets the error and the close packet, and the
  // session is gone.
  const int64_t polling_exp = NowSeconds() + 2;
  absl::StatusOr<testing::HttpResponse> handshake =
      testing::HttpRequest(address_, "GET", "/socket.io/?EIO=4&transport=polling");
  ASSERT_TRUE(handshake.ok()) << handshake.status();
  ASSERT_EQ(handshake->status, 200);
  boost::system::error_code ec;
  json::value opened = json::parse(handshake->body.substr(1), ec);
  ASSERT_FALSE(ec) << handshake->body;
  const std::string target = absl::StrCat("/socket.io/?EIO=4&transport=polling&sid=",
                                          opened.as_object().at("sid").as_string().c_str());
  absl::StatusOr<testing::HttpResponse> sent = testing::HttpRequest(
      address_, "POST", target,
      absl::StrCat(R"(40/chat,{"token":")", Token("sio", polling_exp), R"("})"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_EQ(sent->status, 200);
  std::string polled;
  while (!absl::StrContains(polled,
                            "\x1e"
                            "1") &&
         polled != "1") {
    absl::StatusOr<testing::HttpResponse> poll =
        testing::HttpRequest(address_, "GET", target, "", {}, absl::Seconds(60));
    ASSERT_TRUE(poll.ok()) << poll.status();
    ASSERT_EQ(poll->status, 200) << poll->body;
    // Pings (every 25 s) are answered, as the client would.
    if (poll->body == "2") {
      ASSERT_TRUE(testing::HttpRequest(address_, "POST", target, "3").ok());
      continue;
    }
    polled += polled.empty() ? poll->body : absl::StrCat("\x1e", poll->body);
  }
  EXPECT_TRUE(absl::StrContains(polled, R"(42/chat,["chat:error",{)")) << polled;
  EXPECT_TRUE(absl::StrContains(polled, "token expired")) << polled;
  EXPECT_GE(absl::Now(), absl::FromUnixSeconds(polling_exp));
  absl::StatusOr<testing::HttpResponse> after = testing::HttpRequest(address_, "GET", target);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status, 400);
  EXPECT_EQ(after->body, R"({"code":1,"message":"Session ID unknown"})");
  ExpectServesOthers();
}

// The agent dialect's event stream, like its WebSocket: `error` (the token expired), then
// `stream_end`, and the response ends; the reply itself goes on and is stored.
TEST_F(EdgeTokenTest, TheAgentEventStreamEndsWhenItsTokenExpires) {
  // A reply far longer than the token lives.
  std::unique_ptr<ChildProcess> slow_inference = ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
       "--sim_ttft_ms=1", "--sim_tokens_per_second=5", "--sim_max_tokens=1000"});
  ASSERT_NE(slow_inference, nullptr);
  const std::string slow_address = slow_inference->WaitForListening();
  std::unique_ptr<ChildProcess> edge = StartEdge({absl::StrCat("--jwt_secret_file=", *secret_file_),
                                                  absl::StrCat("--inference=", slow_address)});
  ASSERT_FALSE(address_.empty());
  const int64_t exp = NowSeconds() + 2;
  absl::StatusOr<std::unique_ptr<testing::SseClient>> stream = testing::SseClient::Open(
      address_,
      absl::StrCat("/agent/stream?question=Tell+me+a+long+story&token=", Token("agent-user", exp)));
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ((*stream)->status(), 200);
  std::vector<json::object> events;
  while (true) {
    absl::StatusOr<testing::SseEvent> event = (*stream)->Next(absl::Seconds(30));
    if (!event.ok()) {
      EXPECT_TRUE(absl::IsOutOfRange(event.status())) << event.status();
      break;
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(event->data, ec);
    ASSERT_FALSE(ec) << event->data;
    events.push_back(parsed.as_object());
  }
  ASSERT_GE(events.size(), 2u);
  const json::object& error = events[events.size() - 2];
  EXPECT_EQ(Str(error, "type"), "error") << json::serialize(error);
  EXPECT_TRUE(absl::StrContains(Str(error, "message"), "token expired")) << json::serialize(error);
  EXPECT_EQ(Str(events.back(), "type"), "stream_end");
  EXPECT_GE(absl::Now(), absl::FromUnixSeconds(exp));
  // The reply had started: it was cut off by the token, not by its end.
  bool chunks = false;
  for (const json::object& event : events) {
    chunks = chunks || Str(event, "type") == "analysis_chunk";
    EXPECT_NE(Str(event, "type"), "complete");
  }
  EXPECT_TRUE(chunks);
  ExpectServesOthers();
}

TEST_F(EdgeTokenTest, HostileTokensAreRefusedAndCostNothing) {
  std::unique_ptr<ChildProcess> edge = StartEdge();
  ASSERT_FALSE(address_.empty());
  auto signed_claims = [](const std::string& claims) {
    return SignHs256(kHs256Header, claims, kSecret);
  };
  const int64_t later = NowSeconds() + 600;
  for (const std::string& claims : std::vector<std::string>{
           R"({"sub":"t","exp":"tomorrow"})",
           R"({"sub":"t","exp":true})",
           R"({"sub":"t","exp":[1]})",
           R"({"sub":"t","exp":null})",
           R"({"sub":"t","exp":-1e400})",
           R"({"sub":"t","exp":-99999999999999999999})",
           absl::StrCat(R"({"sub":"t","exp":)", later, R"(,"nbf":1e400})"),
           absl::StrCat(R"({"sub":"t","exp":)", later, R"(,"iat":"now"})"),
           absl::StrCat(R"({"sub":"t","exp":)", later, R"(,"nbf":18446744073709551616})"),
           absl::StrCat(R"({"sub":"a\u0000b","exp":)", later, "}"),
           absl::StrCat(R"({"sub":"a\nb","exp":)", later, "}"),
           absl::StrCat(R"({"sub":"\u001b[31mred","exp":)", later, "}"),
           absl::StrCat(R"({"sub":")", std::string(129, 'x'), R"(","exp":)", later, "}"),
           absl::StrCat(R"({"sub":42,"exp":)", later, "}"),
           absl::StrCat(R"({"sub":"","exp":)", later, "}"),
       }) {
    SCOPED_TRACE(claims);
    absl::StatusOr<std::unique_ptr<RawSocket>> socket = RawSocket::Connect(address_);
    ASSERT_TRUE(socket.ok()) << socket.status();
    ASSERT_TRUE(
        (*socket)
            ->Write(testing::UpgradeRequest(
                "/ws/chat", {absl::StrCat("Authorization: Bearer ", signed_claims(claims))}))
            .ok());
    absl::StatusOr<std::string> head = (*socket)->ReadHttpHead();
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_TRUE(absl::StartsWith(*head, "HTTP/1.1 401")) << *head;
  }
  // Times past any calendar are the issuer's choice: the token never expires, and is accepted.
  for (const std::string& exp : {std::string("1e400"), std::string("18446744073709551616"),
                                 std::string("9223372036854775807")}) {
    SCOPED_TRACE(exp);
    EXPECT_TRUE(OpenRawWebSocket(
                    address_, "/ws/chat",
                    {absl::StrCat("Authorization: Bearer ",
                                  signed_claims(absl::StrCat(R"({"sub":"far","exp":)", exp, "}")))})
                    .ok());
  }
  // A 128-byte subject is a user like any other: it stores and reads back.
  const std::string long_sub(128, 's');
  std::unique_ptr<WsClient> client =
      Connect(absl::StrCat("/ws/chat?token=", Token(long_sub, NowSeconds() + 600)));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(
      client
          ->SendJson(json::object{{"type", "message"}, {"id", "long-sub-1"}, {"content", "hello"}})
          .ok());
  EXPECT_TRUE(ReadUntil(*client, "stream_complete").has_value());
  ExpectServesOthers();
}

// The JWKS file is read by a thread of its own: a read that hangs (a FIFO stands in for a stuck
// volume) holds up no handshake, and the keys it brings count once it ends.
TEST_F(EdgeTokenTest, AJwksReadThatHangsDelaysNoConnection) {
  const TestKey current = GenerateRsaKey("rsa-current");
  const TestKey next = GenerateRsaKey("rsa-next");
  const std::string jwks_file = absl::StrCat(*data_dir_, "/hang-jwks.json");
  const std::string current_jwks = absl::StrCat(R"({"keys":[)", PublicJwk(current, "RS256"), "]}");
  const std::string next_jwks = absl::StrCat(R"({"keys":[)", PublicJwk(next, "RS256"), "]}");
  std::ofstream(jwks_file) << current_jwks;
  std::unique_ptr<ChildProcess> edge =
      StartEdge({absl::StrCat("--jwks_file=", jwks_file), "--threads=1"});
  ASSERT_FALSE(address_.empty());
  auto token = [](const TestKey& key, const std::string& sub) {
    return SignRs256(absl::StrCat(R"({"alg":"RS256","typ":"JWT","kid":")", key.kid, R"("})"),
                     absl::StrCat(R"({"sub":")", sub, R"(","exp":)", NowSeconds() + 600, "}"), key);
  };
  auto upgrade_status = [&](const std::string& bearer) -> std::string {
    absl::StatusOr<std::unique_ptr<RawSocket>> socket = RawSocket::Connect(address_);
    if (!socket.ok()) {
      return std::string(socket.status().message());
    }
    if (!(*socket)
             ->Write(testing::UpgradeRequest("/ws/chat",
                                             {absl::StrCat("Authorization: Bearer ", bearer)}))
             .ok()) {
      return "write failed";
    }
    absl::StatusOr<std::string> head = (*socket)->ReadHttpHead(absl::Seconds(10));
    return head.ok() ? head->substr(0, 12) : std::string(head.status().message());
  };
  ASSERT_EQ(upgrade_status(token(current, "u1")), "HTTP/1.1 101");

  const std::string fifo = absl::StrCat(*data_dir_, "/hang-jwks.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::filesystem::rename(fifo, jwks_file);
  absl::Notification reader_inside;
  absl::Notification finish_read;
  std::thread writer([&] {
    // Returns once the edge opened the FIFO to read it.
    const int fd = open(jwks_file.c_str(), O_WRONLY | O_CLOEXEC);
    reader_inside.Notify();
    finish_read.WaitForNotification();
    if (fd >= 0) {
      EXPECT_EQ(write(fd, next_jwks.data(), next_jwks.size()),
                static_cast<ssize_t>(next_jwks.size()));
      close(fd);
    }
  });
  const bool inside = reader_inside.WaitForNotificationWithTimeout(absl::Seconds(30));
  EXPECT_TRUE(inside) << "the edge never looked at the changed JWKS file";
  if (inside) {
    // With one I/O thread, a handshake that waited on the file would never be answered.
    EXPECT_EQ(upgrade_status(token(current, "u2")), "HTTP/1.1 101");
    EXPECT_EQ(upgrade_status(token(next, "u3")), "HTTP/1.1 401");
  } else {
    close(open(jwks_file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  }
  // A regular file goes back in place before the read ends, so the next look finds that.
  {
    std::ofstream(jwks_file + ".new") << next_jwks;
    std::filesystem::rename(jwks_file + ".new", jwks_file);
  }
  finish_read.Notify();
  writer.join();
  ASSERT_FALSE(edge->WaitForLine("jwks reloaded").empty());
  EXPECT_EQ(upgrade_status(token(next, "u4")), "HTTP/1.1 101");
  EXPECT_EQ(upgrade_status(token(current, "u5")), "HTTP/1.1 401");
}

}  // namespace
}  // namespace parley
