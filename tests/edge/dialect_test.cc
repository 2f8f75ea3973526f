// The dialect registry and the adapter that makes a stateless codec a dialect session, driven
// with a fake host and a fake chat.
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "edge/protocol/codec_session.h"
#include "edge/protocol/native_codec.h"
#include "edge/server/dialects.h"
#include "edge/server/http_session.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

class FakeChat : public Chat {
 public:
  explicit FakeChat(ChatUser user) : user_(std::move(user)) {}
  void Handle(Command command) override { commands.push_back(std::move(command)); }
  void Reject(ErrorEvent error) override { rejected.push_back(std::move(error)); }
  const ChatUser& user() const override { return user_; }

  std::vector<Command> commands;
  std::vector<ErrorEvent> rejected;
  ChatOptions options;

 private:
  ChatUser user_;
};

class FakeHost : public DialectHost {
 public:
  const ConnectionRequest& request() const override { return request_; }
  boost::asio::any_io_executor executor() override { return io_.get_executor(); }
  absl::StatusOr<ChatUser> Authenticate(std::string_view /*token*/,
                                        std::string_view /*development_user_id*/) override {
    return absl::UnauthenticatedError("not in this test");
  }
  Chat& OpenChat(ChatUser user, ChatOptions options) override {
    chat_ = std::make_unique<FakeChat>(std::move(user));
    chat_->options = std::move(options);
    return *chat_;
  }
  Chat* chat() override { return chat_.get(); }
  void Send(std::string frame) override { sent.push_back(std::move(frame)); }
  void Close(CloseCode code) override { closed = code; }

  FakeChat& fake_chat() { return *chat_; }
  ConnectionRequest request_{"/ws/chat", "", "", ChatUser{"u1", "u1"}};
  std::vector<std::string> sent;
  std::optional<CloseCode> closed;

 private:
  boost::asio::io_context io_;
  std::unique_ptr<FakeChat> chat_;
};

TEST(CodecSessionTest, OpensTheChatOfTheUserTheRouteAuthenticated) {
  NativeCodec codec;
  ChatOptions options;
  options.messages_per_minute = 5;
  CodecSession session(codec, options);
  FakeHost host;
  session.Open(host);
  ASSERT_NE(host.chat(), nullptr);
  EXPECT_EQ(host.chat()->user().id, "u1");
  EXPECT_EQ(host.fake_chat().options.messages_per_minute, 5);
}

TEST(CodecSessionTest, OneTextFrameIsOneCommandAndAnythingElseIsRejected) {
  NativeCodec codec;
  CodecSession session(codec);
  FakeHost host;
  session.Open(host);
  session.OnFrame(R"({"type":"ping"})", FrameType::kText);
  session.OnFrame("not json", FrameType::kText);
  session.OnFrame(R"({"type":"ping"})", FrameType::kBinary);
  ASSERT_EQ(host.fake_chat().commands.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Ping>(host.fake_chat().commands[0]));
  ASSERT_EQ(host.fake_chat().rejected.size(), 2u);
  EXPECT_EQ(host.fake_chat().rejected[0].code, ErrorCode::kInvalidJson);
  EXPECT_EQ(host.fake_chat().rejected[1].code, ErrorCode::kInvalidFrame);
  EXPECT_FALSE(host.closed.has_value());
}

TEST(CodecSessionTest, OneEventIsOneFrame) {
  NativeCodec codec;
  CodecSession session(codec);
  Frames frames;
  session.Encode(Pong{}, frames);
  EXPECT_EQ(frames, (Frames{codec.Encode(Pong{})}));
}

TEST(DialectsTest, TheNativeDialectIsServedAtWsChat) {
  const Dialect* native = FindDialect("/ws/chat");
  ASSERT_NE(native, nullptr);
  EXPECT_EQ(native->label, "native");
  EXPECT_EQ(native->subprotocol, "parley.v1");
  EXPECT_FALSE(native->authenticates_in_session());
  EXPECT_EQ(&Dialects().front(), native);
  EXPECT_EQ(FindDialect("/ws/other"), nullptr);
}

TEST(DialectsTest, EveryDialectHasItsOwnPathAndLabelAndASession) {
  for (const Dialect& dialect : Dialects()) {
    EXPECT_EQ(FindDialect(dialect.path), &dialect) << dialect.path;
    EXPECT_EQ(PathLabel(dialect.path), dialect.path);
    EXPECT_FALSE(dialect.label.empty()) << dialect.path;
    // A path serves WebSockets, plain HTTP, or both.
    EXPECT_TRUE(dialect.new_session != nullptr || dialect.serve_http != nullptr) << dialect.path;
    if (dialect.new_session == nullptr) {
      // Only another path of a dialect that has its WebSocket elsewhere (the agent's event
      // stream), so it shares that dialect's label.
      continue;
    }
    for (const Dialect& other : Dialects()) {
      if (&other != &dialect && other.new_session != nullptr) {
        EXPECT_NE(other.label, dialect.label);
      }
    }
  }
  EXPECT_EQ(PathLabel("/nowhere"), "other");
}

}  // namespace
}  // namespace parley::edge
