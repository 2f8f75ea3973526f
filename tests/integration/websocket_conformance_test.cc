// RFC 6455's frame-level rules against the real parley-edge, byte by byte from a raw socket, on
// every WebSocket path it serves: the native protocol, each dialect (Socket.IO's WebSocket alone
// and its upgrade from long-polling included) and the --echo_path endpoint. After each case the
// edge must still serve another client.
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/raw_websocket.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::ClosePayload;
using ::parley::testing::EncodeFrame;
using ::parley::testing::FrameOptions;
using ::parley::testing::HttpGet;
using ::parley::testing::OpenRawWebSocket;
using ::parley::testing::ParleyStack;
using ::parley::testing::RawSocket;
using ::parley::testing::ReadCloseCode;
using ::parley::testing::ReadFrame;
using ::parley::testing::ReadMessage;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::WsClient;
using ::parley::testing::WsFrame;
namespace op = ::parley::testing::ws_opcode;

constexpr size_t kMaxFrameBytes = 4096;

struct WsPath {
  std::string name;
  // A request target that opens a WebSocket on this path (may need a request first).
  std::string (*target)(const std::string& address);
};

// Names the path in test listings (gtest would print the struct's bytes).
void PrintTo(const WsPath& path, std::ostream* out) { *out << path.name; }

std::string SocketIoUpgradeTarget(const std::string& address) {
  // A long-polling session first; its WebSocket upgrade is carried by other code.
  absl::StatusOr<testing::HttpResponse> open =
      HttpGet(address, "/socket.io/?EIO=4&transport=polling&userId=conformance");
  if (!open.ok() || open->status != 200 || open->body.empty() || open->body[0] != '0') {
    ADD_FAILURE() << "no Engine.IO session: " << (open.ok() ? open->body : "no answer");
    return "/socket.io/?EIO=4&transport=websocket";
  }
  const json::value handshake = json::parse(open->body.substr(1));
  return absl::StrCat("/socket.io/?EIO=4&transport=websocket&sid=",
                      std::string(handshake.as_object().at("sid").as_string()));
}

const std::vector<WsPath>& Paths() {
  static const auto* paths = new std::vector<WsPath>{
      {"native", [](const std::string&) { return std::string("/ws/chat?userId=conformance"); }},
      {"copilot", [](const std::string&) { return std::string("/copilot?userId=conformance"); }},
      {"ai_chat", [](const std::string&) { return std::string("/ws/ai-chat?userId=conformance"); }},
      {"agent",
       [](const std::string&) {
         return std::string("/ws/agent/stream?question=hello&userId=conformance");
       }},
      {"socketio",
       [](const std::string&) { return std::string("/socket.io/?EIO=4&transport=websocket"); }},
      {"socketio_upgrade", SocketIoUpgradeTarget},
      {"echo", [](const std::string&) { return std::string("/ws/echo"); }},
  };
  return *paths;
}

class WebSocketConformanceTest : public ::testing::TestWithParam<WsPath> {
 protected:
  static void SetUpTestSuite() {
    StackOptions options;
    options.edge_flags = {"--echo_path=/ws/echo",
                          absl::StrCat("--max_frame_bytes=", kMaxFrameBytes),
                          "--connection_messages_per_minute=0", "--user_messages_per_minute=0",
                          // Every agent connection starts a turn that never ends.
                          "--max_concurrent_turns=0"};
    // The agent path asks its question on connect; its answer must not end the connection
    // before a case does.
    options.inference_flags = {"--sim_ttft_ms=600000"};
    stack_ = ParleyStack::Start(options).release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(stack_, nullptr); }

  std::unique_ptr<RawSocket> Open() {
    const std::string& address = stack_->edge_address();
    absl::StatusOr<std::unique_ptr<RawSocket>> socket =
        OpenRawWebSocket(address, GetParam().target(address));
    EXPECT_TRUE(socket.ok()) << socket.status();
    return socket.ok() ? *std::move(socket) : nullptr;
  }

  // Sends `bytes` on a fresh connection and expects the edge to close it with `code`.
  void ExpectClose(const std::string& bytes, int code) {
    std::unique_ptr<RawSocket> socket = Open();
    ASSERT_NE(socket, nullptr);
    ASSERT_TRUE(socket->Write(bytes).ok());
    absl::StatusOr<int> closed = ReadCloseCode(*socket);
    ASSERT_TRUE(closed.ok()) << closed.status();
    EXPECT_EQ(*closed, code);
    // The client's half of the close handshake (the edge may have ended the connection already,
    // so a failed write is no failure); then the edge ends the TCP connection.
    socket->Write(EncodeFrame(op::kClose, ClosePayload(1000))).IgnoreError();
    EXPECT_TRUE(socket->WaitForClose(absl::Seconds(30)));
  }

  // Whatever the last case did, a newcomer is served.
  void TearDown() override {
    if (stack_ == nullptr) {
      return;
    }
    absl::StatusOr<std::unique_ptr<WsClient>> other =
        WsClient::Connect(stack_->edge_address(), "/ws/chat?userId=bystander");
    ASSERT_TRUE(other.ok()) << other.status();
    ASSERT_TRUE((*other)->Send(R"({"type":"ping"})").ok());
    EXPECT_TRUE(ReadUntil(**other, "pong").has_value());
    absl::StatusOr<std::unique_ptr<RawSocket>> echo =
        OpenRawWebSocket(stack_->edge_address(), "/ws/echo");
    ASSERT_TRUE(echo.ok()) << echo.status();
    ASSERT_TRUE((*echo)->Write(EncodeFrame(op::kText, "still here")).ok());
    absl::StatusOr<WsFrame> back = ReadMessage(**echo);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->payload, "still here");
  }

  static ParleyStack* stack_;
};

ParleyStack* WebSocketConformanceTest::stack_ = nullptr;

TEST_P(WebSocketConformanceTest, ACloseIsAnsweredWithTheSameCode) {
  ExpectClose(EncodeFrame(op::kClose, ClosePayload(1000, "bye")), 1000);
}

TEST_P(WebSocketConformanceTest, AnInvalidCloseCodeIsAProtocolError) {
  // 1005 and 1006 must never be sent; 1004 is reserved, 1016-2999 are the standard's, and 999
  // lies below every range.
  for (uint16_t code : {999, 1004, 1005, 1006, 1016, 2999}) {
    SCOPED_TRACE(code);
    ExpectClose(EncodeFrame(op::kClose, ClosePayload(code)), 1002);
  }
}

TEST_P(WebSocketConformanceTest, InvalidUtf8InATextFrameCloses1007) {
  for (const std::string& bad :
       {std::string("{\"type\":\"ping\",\"x\":\"\xff\"}"), std::string("\xc3\x28"),
        std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80"), std::string("\xc0\xaf")}) {
    SCOPED_TRACE(bad);
    ExpectClose(EncodeFrame(op::kText, bad), 1007);
  }
  // Split inside a character and then broken in the continuation.
  ExpectClose(EncodeFrame(op::kText, "ok \xe2\x82", {.fin = false}) +
                  EncodeFrame(op::kContinuation, "\x28", {.fin = true}),
              1007);
}

TEST_P(WebSocketConformanceTest, AFragmentedMessageMayCarryPingsBetweenItsFragments) {
  std::unique_ptr<RawSocket> socket = Open();
  ASSERT_NE(socket, nullptr);
  const std::string message = R"({"type":"ping"})";
  ASSERT_TRUE(socket
                  ->Write(EncodeFrame(op::kText, message.substr(0, 5), {.fin = false}) +
                          EncodeFrame(op::kPing, "between") +
                          EncodeFrame(op::kContinuation, message.substr(5, 5), {.fin = false}) +
                          EncodeFrame(op::kPong, "unsolicited") +
                          EncodeFrame(op::kContinuation, message.substr(10)))
                  .ok());
  // The ping is answered in the middle of the message, with its payload.
  bool ponged = false;
  std::string echoed;
  while (!ponged || (GetParam().name == "echo" && echoed.empty())) {
    absl::StatusOr<WsFrame> frame = ReadFrame(*socket);
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_NE(frame->opcode, op::kClose) << frame->payload;
    if (frame->opcode == op::kPong) {
      EXPECT_EQ(frame->payload, "between");
      ponged = true;
    } else if (frame->opcode == op::kText && GetParam().name == "echo") {
      echoed = frame->payload;
    }
  }
  if (GetParam().name == "echo") {
    EXPECT_EQ(echoed, message);
  }
  ExpectClose(EncodeFrame(op::kClose, ClosePayload(1000)), 1000);
}

TEST_P(WebSocketConformanceTest, OversizedOrFragmentedControlFramesAreProtocolErrors) {
  ExpectClose(EncodeFrame(op::kPing, std::string(126, 'p')), 1002);
  ExpectClose(EncodeFrame(op::kPing, "part", {.fin = false}), 1002);
  ExpectClose(EncodeFrame(op::kClose, ClosePayload(1000, std::string(124, 'r'))), 1002);
}

TEST_P(WebSocketConformanceTest, ReservedBitsAndOpcodesAreProtocolErrors) {
  for (uint8_t rsv : {0b100, 0b010, 0b001}) {
    SCOPED_TRACE(static_cast<int>(rsv));
    ExpectClose(EncodeFrame(op::kText, R"({"type":"ping"})", {.rsv = rsv}), 1002);
  }
  for (uint8_t opcode : {0x3, 0x7, 0xB, 0xF}) {
    SCOPED_TRACE(static_cast<int>(opcode));
    ExpectClose(EncodeFrame(opcode, "x"), 1002);
  }
}

TEST_P(WebSocketConformanceTest, ContinuationsOutOfOrderAreProtocolErrors) {
  ExpectClose(EncodeFrame(op::kContinuation, "orphan"), 1002);
  ExpectClose(EncodeFrame(op::kText, "one", {.fin = false}) + EncodeFrame(op::kText, "two"), 1002);
}

TEST_P(WebSocketConformanceTest, AMessageOverTheLimitCloses1009) {
  ExpectClose(EncodeFrame(op::kText, std::string(kMaxFrameBytes + 1, 'a')), 1009);
  ExpectClose(EncodeFrame(op::kBinary, std::string(kMaxFrameBytes + 1, 'b')), 1009);
  // In fragments that are each small.
  std::string fragments;
  for (size_t sent = 0; sent <= kMaxFrameBytes; sent += 1000) {
    fragments += EncodeFrame(sent == 0 ? op::kText : op::kContinuation, std::string(1000, 'c'),
                             {.fin = false});
  }
  ExpectClose(fragments, 1009);
}

TEST_P(WebSocketConformanceTest, AnUnmaskedClientFrameIsAProtocolError) {
  ExpectClose(EncodeFrame(op::kText, R"({"type":"ping"})", {.masked = false}), 1002);
}

TEST_P(WebSocketConformanceTest, AnIdleConnectionAnswersPingsAndReadsWhatArrivesTogether) {
  // Between messages the edge keeps an idle connection on its bare socket, taking pongs there and
  // opening a stream for anything else (see WebSocketTransport): whatever arrives, alone or
  // together, is read as one stream would read it.
  std::unique_ptr<RawSocket> socket = Open();
  ASSERT_NE(socket, nullptr);
  ASSERT_TRUE(socket->Write(EncodeFrame(op::kPong, "unsolicited")).ok());
  ASSERT_TRUE(
      socket->Write(EncodeFrame(op::kPong, "") + EncodeFrame(op::kPing, "after idle")).ok());
  // The pong comes after whatever the dialect says first (a greeting, an agent's stream).
  std::string ponged;
  for (int frames = 0; frames < 50 && ponged.empty(); ++frames) {
    absl::StatusOr<WsFrame> frame = ReadFrame(*socket);
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_NE(frame->opcode, op::kClose) << frame->payload;
    if (frame->opcode == op::kPong) {
      ponged = frame->payload;
    }
  }
  EXPECT_EQ(ponged, "after idle");
  if (GetParam().name == "echo") {
    // A pong, a message as large as allowed and a small one in one write, each echoed intact.
    const std::string large(kMaxFrameBytes, 'L');
    ASSERT_TRUE(socket
                    ->Write(EncodeFrame(op::kPong, "p") + EncodeFrame(op::kText, large) +
                            EncodeFrame(op::kText, "second"))
                    .ok());
    absl::StatusOr<WsFrame> first = ReadMessage(*socket);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->payload, large);
    absl::StatusOr<WsFrame> second = ReadMessage(*socket);
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->payload, "second");
    // A message whose fragments come apart, with the connection idle in between.
    ASSERT_TRUE(socket->Write(EncodeFrame(op::kText, "first half ", {.fin = false})).ok());
    ASSERT_TRUE(socket->Write(EncodeFrame(op::kPing, "mid")).ok());
    absl::StatusOr<WsFrame> mid = ReadFrame(*socket);
    ASSERT_TRUE(mid.ok()) << mid.status();
    EXPECT_EQ(mid->opcode, op::kPong);
    EXPECT_EQ(mid->payload, "mid");
    ASSERT_TRUE(socket->Write(EncodeFrame(op::kContinuation, "second half")).ok());
    absl::StatusOr<WsFrame> joined = ReadMessage(*socket);
    ASSERT_TRUE(joined.ok()) << joined.status();
    EXPECT_EQ(joined->payload, "first half second half");
  }
  ASSERT_TRUE(socket->Write(EncodeFrame(op::kClose, ClosePayload(1000))).ok());
  absl::StatusOr<int> closed = ReadCloseCode(*socket);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(*closed, 1000);
}

INSTANTIATE_TEST_SUITE_P(EveryPath, WebSocketConformanceTest, ::testing::ValuesIn(Paths()),
                         [](const ::testing::TestParamInfo<WsPath>& info) {
                           return info.param.name;
                         });

TEST(EchoEndpointTest, IsOffByDefault) {
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start();
  ASSERT_NE(stack, nullptr);
  EXPECT_FALSE(OpenRawWebSocket(stack->edge_address(), "/ws/echo").ok());
}

TEST(EchoEndpointTest, EchoesTextAndBinaryAsSent) {
  StackOptions options;
  options.edge_flags = {"--echo_path=/ws/echo"};
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(options);
  ASSERT_NE(stack, nullptr);
  absl::StatusOr<std::unique_ptr<RawSocket>> socket =
      OpenRawWebSocket(stack->edge_address(), "/ws/echo");
  ASSERT_TRUE(socket.ok()) << socket.status();
  const std::string binary("\x00\xff\x01 binary", 10);
  ASSERT_TRUE((*socket)
                  ->Write(EncodeFrame(op::kText, "héllo") + EncodeFrame(op::kBinary, binary) +
                          EncodeFrame(op::kText, std::string(60000, 'z')))
                  .ok());
  absl::StatusOr<WsFrame> text = ReadMessage(**socket);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->opcode, op::kText);
  EXPECT_EQ(text->payload, "héllo");
  absl::StatusOr<WsFrame> bytes = ReadMessage(**socket);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->opcode, op::kBinary);
  EXPECT_EQ(bytes->payload, binary);
  absl::StatusOr<WsFrame> large = ReadMessage(**socket);
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_EQ(large->payload.size(), 60000u);
}

}  // namespace
}  // namespace parley
