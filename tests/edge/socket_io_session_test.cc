#include "edge/protocol/socket_io_session.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio/io_context.hpp"
#include "boost/json/parse.hpp"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

namespace json = boost::json;

class FakeChat final : public Chat {
 public:
  explicit FakeChat(ChatUser user) : user_(std::move(user)) {}
  void Handle(Command command) override { commands.push_back(std::move(command)); }
  void Reject(ErrorEvent error) override { rejected.push_back(std::move(error)); }
  const ChatUser& user() const override { return user_; }

  std::vector<Command> commands;
  std::vector<ErrorEvent> rejected;

 private:
  ChatUser user_;
};

// A transport as the session sees it: the request, the strand, authentication, and what it sent.
class FakeHost final : public DialectHost {
 public:
  FakeHost(boost::asio::io_context& io, ConnectionRequest request)
      : io_(io), request_(std::move(request)) {}

  const ConnectionRequest& request() const override { return request_; }
  boost::asio::any_io_executor executor() override { return io_.get_executor(); }
  absl::StatusOr<ChatUser> Authenticate(std::string_view token,
                                        std::string_view development_user_id) override {
    tokens.emplace_back(token);
    if (token == "good") {
      return ChatUser{"alice", "Alice Example"};
    }
    if (token.empty() && !development_user_id.empty()) {
      return ChatUser{std::string(development_user_id), std::string(development_user_id)};
    }
    return absl::UnauthenticatedError("refused");
  }
  Chat& OpenChat(ChatUser user, ChatOptions) override {
    chat_.emplace(std::move(user));
    return *chat_;
  }
  Chat* chat() override { return chat_.has_value() ? &*chat_ : nullptr; }
  void Send(std::string frame) override { sent.push_back(std::move(frame)); }
  void Close(CloseCode code) override { closed = code; }

  FakeChat& fake_chat() { return *chat_; }

  std::vector<std::string> sent;
  std::vector<std::string> tokens;
  std::optional<CloseCode> closed;

 private:
  boost::asio::io_context& io_;
  ConnectionRequest request_;
  std::optional<FakeChat> chat_;
};

class SocketIoSessionTest : public ::testing::Test {
 protected:
  void Open(std::string query = "EIO=4&transport=websocket", std::string authorization = "",
            engine_io::EngineIoOptions options = {}) {
    ConnectionRequest request;
    request.path = "/socket.io/";
    request.query = std::move(query);
    request.authorization = std::move(authorization);
    host_.emplace(io_, std::move(request));
    session_.emplace(options);
    session_->Open(*host_);
  }

  void Frame(const std::string& frame) { session_->OnFrame(frame, FrameType::kText); }

  std::vector<std::string> Encode(const Event& event) {
    Frames frames;
    session_->Encode(event, frames);
    return frames;
  }

  void ConnectAs(const std::string& token) {
    Frame("40/chat,{\"token\":\"" + token + "\"}");
    ASSERT_NE(host_->chat(), nullptr);
  }

  // The name and argument of an EVENT frame ("42/chat,[name,arg]").
  static std::pair<std::string, json::value> Event(const std::string& frame) {
    EXPECT_EQ(frame.substr(0, 8), "42/chat,") << frame;
    json::value args = json::parse(frame.substr(8));
    return {std::string(args.as_array().at(0).as_string()), args.as_array().at(1)};
  }

  boost::asio::io_context io_;
  std::optional<FakeHost> host_;
  std::optional<SocketIoSession> session_;
};

TEST_F(SocketIoSessionTest, OpensWithTheEngineIoHandshake) {
  Open("EIO=4&transport=websocket");
  ASSERT_EQ(host_->sent.size(), 1u);
  ASSERT_EQ(host_->sent[0].front(), '0');
  const json::value open = json::parse(host_->sent[0].substr(1));
  EXPECT_EQ(open.at("upgrades"), json::array{});
  EXPECT_EQ(open.at("pingInterval"), 25000);
  EXPECT_EQ(open.at("pingTimeout"), 20000);
  EXPECT_EQ(open.at("sid").as_string().size(), 20u);
}

TEST_F(SocketIoSessionTest, APollingSessionOffersTheUpgradeUnderItsTransportsSid) {
  ConnectionRequest request;
  request.query = "EIO=4&transport=polling&t=abc";
  request.transport_session_id = "the-polling-sid";
  host_.emplace(io_, std::move(request));
  session_.emplace(engine_io::EngineIoOptions{});
  session_->Open(*host_);
  const json::value open = json::parse(host_->sent.at(0).substr(1));
  EXPECT_EQ(open.at("sid"), "the-polling-sid");
  EXPECT_EQ(open.at("upgrades"), json::parse(R"(["websocket"])"));
}

TEST_F(SocketIoSessionTest, AConnectWithAGoodTokenIsAnsweredWithASid) {
  Open();
  Frame(R"(40/chat,{"token":"good"})");
  EXPECT_EQ(host_->tokens, std::vector<std::string>{"good"});
  ASSERT_NE(host_->chat(), nullptr);
  EXPECT_EQ(host_->chat()->user().id, "alice");
  ASSERT_EQ(host_->sent.size(), 2u);
  const std::string& answer = host_->sent[1];
  ASSERT_EQ(answer.substr(0, 9), "40/chat,{");
  EXPECT_TRUE(json::parse(answer.substr(8)).as_object().contains("sid"));
}

TEST_F(SocketIoSessionTest, AConnectWithoutAuthUsesTheHandshakesAuthorizationHeader) {
  Open("EIO=4&transport=polling", "Bearer good");
  Frame("40/chat,");
  EXPECT_EQ(host_->tokens, std::vector<std::string>{"good"});
  EXPECT_NE(host_->chat(), nullptr);
}

TEST_F(SocketIoSessionTest, ANullTokenIsNoTokenAndAuthUserIdNamesTheDevelopmentUser) {
  Open("EIO=4&transport=websocket", "Bearer good");
  Frame(R"(40/chat,{"token":"null","userId":"dev-bob"})");
  // "null" falls through to the header's token.
  EXPECT_EQ(host_->tokens, std::vector<std::string>{"good"});

  Open("EIO=4&transport=websocket&userId=dev-carol");
  Frame(R"(40/chat,{"token":"undefined"})");
  EXPECT_EQ(host_->tokens, std::vector<std::string>{""});
  ASSERT_NE(host_->chat(), nullptr);
  EXPECT_EQ(host_->chat()->user().id, "dev-carol");
}

TEST_F(SocketIoSessionTest, ABadTokenIsAnsweredWithConnectErrorAndTheSessionStays) {
  Open();
  Frame(R"(40/chat,{"token":"forged"})");
  EXPECT_EQ(host_->chat(), nullptr);
  ASSERT_EQ(host_->sent.size(), 2u);
  EXPECT_EQ(host_->sent[1], R"(44/chat,{"message":"Authentication failed"})");
  EXPECT_FALSE(host_->closed.has_value());
}

TEST_F(SocketIoSessionTest, AnotherNamespaceIsRefused) {
  Open();
  Frame("40/admin,");
  EXPECT_EQ(host_->sent.back(), R"(44/admin,{"message":"Invalid namespace"})");
  EXPECT_EQ(host_->chat(), nullptr);
}

TEST_F(SocketIoSessionTest, OneSendIsStoredMessageAckThinkingStreamMessageComplete) {
  Open();
  ConnectAs("good");
  Frame(R"(42/chat,3["chat:send",{"conversationId":"c1","content":"Hi","role":"user"}])");
  ASSERT_EQ(host_->fake_chat().commands.size(), 1u);
  const SendMessage& send = std::get<SendMessage>(host_->fake_chat().commands[0]);
  EXPECT_EQ(send.conversation_id, "c1");
  EXPECT_EQ(send.content, "Hi");
  EXPECT_FALSE(send.id.empty());

  std::vector<std::string> frames = Encode(Ack{send.id, "c1", "m1", "2026-12-01T21:30:00.000Z"});
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(Event(frames[0]).first, "chat:message");
  EXPECT_EQ(Event(frames[0]).second,
            json::parse(R"({"conversationId":"c1","message":{"id":"m1","content":"Hi",
                "role":"user","conversationId":"c1","createdAt":"2026-12-01T21:30:00.000Z"}})"));
  EXPECT_EQ(frames[1], R"(43/chat,3[{"ok":true,"messageId":"m1"}])");
  EXPECT_EQ(Event(frames[2]).first, "chat:thinking");

  EXPECT_TRUE(Encode(StreamStart{"c1", "m2", "sim", "2026-12-01T21:30:00.100Z"}).empty());
  frames = Encode(StreamToken{"m2", 1, "Hel"});
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(
      Event(frames[0]).second,
      json::parse(R"({"conversationId":"c1","messageId":"m2","chunk":"Hel","isComplete":false})"));
  Encode(StreamToken{"m2", 2, "lo"});
  frames = Encode(StreamComplete{"m2", 2, "stop", 5, 2});
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(
      Event(frames[0]).second,
      json::parse(R"({"conversationId":"c1","messageId":"m2","chunk":"","isComplete":true})"));
  EXPECT_EQ(Event(frames[1]).second,
            json::parse(R"({"conversationId":"c1","message":{"id":"m2","content":"Hello",
                "role":"assistant","conversationId":"c1","createdAt":"2026-12-01T21:30:00.100Z"}})"));
  EXPECT_EQ(Event(frames[2]).first, "chat:complete");
}

TEST_F(SocketIoSessionTest, AFailedSendIsAChatErrorAndANegativeAck) {
  Open();
  ConnectAs("good");
  Frame(R"(42/chat,0["chat:send",{"conversationId":"c1","content":"Hi"}])");
  const std::string id = std::get<SendMessage>(host_->fake_chat().commands[0]).id;
  const std::vector<std::string> frames =
      Encode(ErrorEvent{ErrorCode::kRateLimited, "too many messages; retry later", id});
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(Event(frames[0]).second,
            json::parse(R"({"conversationId":"c1","error":"too many messages; retry later"})"));
  EXPECT_EQ(frames[1], R"(43/chat,0[{"ok":false,"error":"too many messages; retry later"}])");
}

TEST_F(SocketIoSessionTest, AMalformedEventIsRefusedThroughTheChatWithItsConversation) {
  Open();
  ConnectAs("good");
  Frame(R"(42/chat,1["chat:send",{"conversationId":"c1","content":""}])");
  ASSERT_EQ(host_->fake_chat().rejected.size(), 1u);
  const std::vector<std::string> frames = Encode(host_->fake_chat().rejected[0]);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(Event(frames[0]).second.at("conversationId"), "c1");
  EXPECT_EQ(frames[1].substr(0, 10), "43/chat,1[");
}

TEST_F(SocketIoSessionTest, BinaryPacketsAreRefusedWithAClearError) {
  Open();
  ConnectAs("good");
  Frame(R"(451-/chat,["chat:send",{"_placeholder":true,"num":0}])");
  ASSERT_EQ(host_->fake_chat().rejected.size(), 1u);
  EXPECT_NE(host_->fake_chat().rejected[0].message.find("binary"), std::string::npos);
  EXPECT_FALSE(host_->closed.has_value());
}

TEST_F(SocketIoSessionTest, JoinTypingAndRoomEventsNameTheUser) {
  Open();
  ConnectAs("good");
  Frame(R"(42/chat,4["chat:join",{"conversationId":"c1"}])");
  std::vector<std::string> frames = Encode(Joined{"c1"});
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(Event(frames[0]).second, json::parse(R"({"conversationId":"c1"})"));
  EXPECT_EQ(frames[1], R"(43/chat,4[{"ok":true}])");
  frames = Encode(MemberJoined{"c1", "alice", "Alice Example"});
  EXPECT_EQ(Event(frames.at(0)).first, "chat:user-joined");
  EXPECT_EQ(Event(frames.at(0)).second,
            json::parse(R"({"userId":"alice","username":"Alice Example"})"));
  frames = Encode(TypingRelay{"c1", true});
  EXPECT_EQ(Event(frames.at(0)).second,
            json::parse(R"({"userId":"alice","username":"Alice Example","isTyping":true})"));
  frames = Encode(MemberLeft{"c1", "alice", "Alice Example"});
  EXPECT_EQ(Event(frames.at(0)).first, "chat:user-left");
  // A refused join names its conversation and answers the acknowledgement.
  Frame(R"(42/chat,5["chat:join",{"conversationId":"theirs"}])");
  frames = Encode(ErrorEvent{ErrorCode::kNotFound, "no such conversation", "", 0, "theirs"});
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(Event(frames[0]).second,
            json::parse(R"({"conversationId":"theirs","error":"no such conversation"})"));
  EXPECT_EQ(frames[1], R"(43/chat,5[{"ok":false,"error":"no such conversation"}])");
}

TEST_F(SocketIoSessionTest, EventsBeforeConnectAreIgnoredAndGarbageCloses) {
  Open();
  Frame(R"(42/chat,["chat:send",{"content":"early"}])");
  EXPECT_EQ(host_->chat(), nullptr);
  EXPECT_FALSE(host_->closed.has_value());
  Frame("4abc");
  EXPECT_EQ(host_->closed, CloseCode::kPolicy);
}

TEST_F(SocketIoSessionTest, TheServerPingsAndClosesAClientThatDoesNotAnswer) {
  engine_io::EngineIoOptions options;
  options.ping_interval = absl::Milliseconds(5);
  options.ping_timeout = absl::Milliseconds(5);
  Open("EIO=4&transport=websocket", "", options);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!host_->closed.has_value() && std::chrono::steady_clock::now() < give_up) {
    io_.run_one_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(host_->sent.at(1), "2");
  EXPECT_EQ(host_->closed, CloseCode::kNormal);
}

TEST_F(SocketIoSessionTest, APongKeepsTheClient) {
  engine_io::EngineIoOptions options;
  options.ping_interval = absl::Milliseconds(5);
  options.ping_timeout = absl::Seconds(60);
  Open("EIO=4&transport=websocket", "", options);
  for (int pings = 0; pings < 3;) {
    io_.run_one_for(std::chrono::milliseconds(100));
    if (host_->sent.back() == "2") {
      ++pings;
      host_->sent.push_back("(answered)");
      Frame("3");
    }
  }
  EXPECT_FALSE(host_->closed.has_value());
  session_->OnClosed();
}

}  // namespace
}  // namespace parley::edge
