#include "edge/server/engine_io_session.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/strand.hpp"
#include "boost/json/parse.hpp"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;
namespace json = boost::json;

class RecordingListener final : public EngineIoSession::Listener {
 public:
  void OnMessage(engine_io::Packet packet) override { messages.push_back(packet.data); }
  void OnClosed(absl::string_view why) override { closed = std::string(why); }
  void OnWritable() override { ++writable; }

  std::vector<std::string> messages;
  std::optional<std::string> closed;
  int writable = 0;
};

// One long-polling session driven the way an HTTP front end drives it, on a real io_context.
class EngineIoSessionTest : public ::testing::Test {
 protected:
  std::shared_ptr<EngineIoSession> Open(EngineIoOptions options = {}) {
    session_ = sessions_.Create(net::make_strand(io_.get_executor()), options);
    listener_ = std::make_shared<RecordingListener>();
    session_->SetListener(listener_);
    std::optional<PollingAnswer> open;
    session_->OpenPolling([&](PollingAnswer answer) { open = std::move(answer); });
    RunUntil([&] { return open.has_value(); });
    EXPECT_EQ(open->status, 200u);
    EXPECT_EQ(open->content_type, "text/plain; charset=UTF-8");
    handshake_ = open->body;
    return session_;
  }

  // Runs handlers until `done` holds; bounded so a broken session fails instead of hanging.
  template <class Done>
  void RunUntil(Done done) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(done());
  }

  PollingAnswer Post(const std::string& body) {
    std::optional<PollingAnswer> answer;
    session_->Post(body, [&](PollingAnswer got) { answer = std::move(got); });
    RunUntil([&] { return answer.has_value(); });
    return *answer;
  }

  net::io_context io_;
  EngineIoSessions sessions_;
  std::shared_ptr<EngineIoSession> session_;
  std::shared_ptr<RecordingListener> listener_;
  std::string handshake_;
};

TEST_F(EngineIoSessionTest, TheHandshakeIsTheOpenPacketOfARegisteredSession) {
  Open();
  ASSERT_EQ(handshake_.front(), '0');
  const json::value data = json::parse(handshake_.substr(1));
  EXPECT_EQ(data.at("sid"), session_->sid().c_str());
  EXPECT_EQ(session_->sid().size(), 20u);
  EXPECT_EQ(data.at("upgrades"), json::parse(R"(["websocket"])"));
  EXPECT_EQ(data.at("pingInterval"), 25000);
  EXPECT_EQ(data.at("pingTimeout"), 20000);
  EXPECT_EQ(data.at("maxPayload"), 64 * 1024);
  EXPECT_EQ(sessions_.Find(session_->sid()), session_);
}

TEST_F(EngineIoSessionTest, APostDeliversItsMessagesAndAPollCollectsWhatWasSent) {
  Open();
  const PollingAnswer posted = Post(
      "40/chat,\x1e"
      "42/chat,[\"x\"]");
  EXPECT_EQ(posted.status, 200u);
  EXPECT_EQ(posted.body, "ok");
  EXPECT_EQ(listener_->messages, (std::vector<std::string>{"0/chat,", "2/chat,[\"x\"]"}));

  net::post(session_->strand(), [this] {
    session_->Send("0/chat,{\"sid\":\"s\"}");
    session_->Send("2/chat,[\"y\"]");
  });
  std::optional<PollingAnswer> poll;
  session_->Poll([&](PollingAnswer answer) { poll = std::move(answer); });
  RunUntil([&] { return poll.has_value(); });
  EXPECT_EQ(poll->status, 200u);
  EXPECT_EQ(poll->body,
            "40/chat,{\"sid\":\"s\"}\x1e"
            "42/chat,[\"y\"]");
}

TEST_F(EngineIoSessionTest, AWaitingPollIsAnsweredByTheNextPacket) {
  Open();
  std::optional<PollingAnswer> poll;
  session_->Poll([&](PollingAnswer answer) { poll = std::move(answer); });
  io_.restart();
  io_.poll();
  EXPECT_FALSE(poll.has_value());
  net::post(session_->strand(), [this] { session_->Send("2/chat,[\"late\"]"); });
  RunUntil([&] { return poll.has_value(); });
  EXPECT_EQ(poll->body, "42/chat,[\"late\"]");
}

TEST_F(EngineIoSessionTest, TheServerPingsAndAPongKeepsTheSessionOpen) {
  EngineIoOptions options;
  options.ping_interval = absl::Milliseconds(20);
  options.ping_timeout = absl::Seconds(30);
  Open(options);
  for (int i = 0; i < 3; ++i) {
    std::optional<PollingAnswer> poll;
    session_->Poll([&](PollingAnswer answer) { poll = std::move(answer); });
    RunUntil([&] { return poll.has_value(); });
    EXPECT_EQ(poll->body, "2");
    EXPECT_EQ(Post("3").body, "ok");
  }
  EXPECT_FALSE(listener_->closed.has_value());
}

TEST_F(EngineIoSessionTest, AClientThatStopsAnsweringIsGoneAfterThePingTimeout) {
  EngineIoOptions options;
  options.ping_interval = absl::Milliseconds(10);
  options.ping_timeout = absl::Milliseconds(10);
  Open(options);
  RunUntil([&] { return listener_->closed.has_value(); });
  EXPECT_EQ(*listener_->closed, "ping timeout");
  EXPECT_EQ(sessions_.Find(session_->sid()), nullptr);
  std::optional<PollingAnswer> poll;
  session_->Poll([&](PollingAnswer answer) { poll = std::move(answer); });
  RunUntil([&] { return poll.has_value(); });
  EXPECT_EQ(poll->status, 400u);
  EXPECT_EQ(poll->body, R"({"code":1,"message":"Session ID unknown"})");
}

TEST_F(EngineIoSessionTest, OverlappingPollsEndTheSession) {
  Open();
  std::optional<PollingAnswer> first;
  std::optional<PollingAnswer> second;
  session_->Poll([&](PollingAnswer answer) { first = std::move(answer); });
  session_->Poll([&](PollingAnswer answer) { second = std::move(answer); });
  RunUntil([&] { return first.has_value() && second.has_value(); });
  EXPECT_EQ(first->status, 200u);
  EXPECT_EQ(first->body, "1");
  EXPECT_EQ(second->status, 400u);
  EXPECT_TRUE(listener_->closed.has_value());
}

TEST_F(EngineIoSessionTest, ABrokenPayloadIsRefusedAndEndsTheSession) {
  Open();
  const PollingAnswer answer = Post("abc");
  EXPECT_EQ(answer.status, 400u);
  EXPECT_EQ(answer.content_type, "application/json");
  EXPECT_TRUE(listener_->closed.has_value());
}

TEST_F(EngineIoSessionTest, AClientCloseEndsItsPendingPollWithANoop) {
  Open();
  std::optional<PollingAnswer> poll;
  session_->Poll([&](PollingAnswer answer) { poll = std::move(answer); });
  EXPECT_EQ(Post("1").body, "ok");
  RunUntil([&] { return poll.has_value(); });
  EXPECT_EQ(poll->body, "6");
  EXPECT_EQ(*listener_->closed, "client close");
}

TEST_F(EngineIoSessionTest, ProducersPauseWhileAClientDoesNotPollAndResumeWhenItDoes) {
  EngineIoOptions options;
  options.high_water_bytes = 100;
  Open(options);
  bool writable = true;
  net::post(session_->strand(), [&] {
    for (int i = 0; i < 10; ++i) {
      session_->Send(std::string(20, 'x'));
    }
    writable = session_->Writable();
  });
  RunUntil([&] { return !writable; });
  std::optional<PollingAnswer> poll;
  session_->Poll([&](PollingAnswer answer) { poll = std::move(answer); });
  RunUntil([&] { return poll.has_value(); });
  EXPECT_EQ(listener_->writable, 1);
  EXPECT_FALSE(listener_->closed.has_value());
}

TEST_F(EngineIoSessionTest, AClientThatNeverPollsWhileMuchIsQueuedIsClosed) {
  EngineIoOptions options;
  options.max_queued_bytes = 1000;
  Open(options);
  net::post(session_->strand(), [&] {
    for (int i = 0; i < 20; ++i) {
      session_->Send(std::string(100, 'x'));
    }
  });
  RunUntil([&] { return listener_->closed.has_value(); });
  EXPECT_EQ(*listener_->closed, "client not reading");
}

}  // namespace
}  // namespace parley::edge
