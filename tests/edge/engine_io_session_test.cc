// One Engine.IO session alone, driven the way the edge's HTTP side drives it (handshake, GETs
// and POSTs of long-polling) on a real io_context, with a fake dialect session in place of
// Socket.IO's so every frame is the test's own.
#include "edge/server/engine_io_session.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "edge/server/server_context.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;

// A dialect session that answers the handshake with "0open", records the frames it is given,
// encodes a Pong event as "4pong" and otherwise does what the test asks of its host.
class FakeDialect final : public DialectSession {
 public:
  struct Seen {
    DialectHost* host = nullptr;
    std::vector<std::string> frames;
    bool closed = false;
  };

  explicit FakeDialect(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}

  void Open(DialectHost& host) override {
    seen_->host = &host;
    host.Send("0open");
  }
  void OnFrame(std::string_view frame, FrameType) override { seen_->frames.emplace_back(frame); }
  void Encode(const Event& event, Frames& frames) override {
    if (std::holds_alternative<Pong>(event)) {
      frames.push_back("4pong");
    }
  }
  void OnClosed() override { seen_->closed = true; }

 private:
  std::shared_ptr<Seen> seen_;
};

class EngineIoSessionTest : public ::testing::Test {
 protected:
  // A session whose handshake was answered; `handshake` gets that answer.
  std::shared_ptr<EngineIoSession> Open(std::optional<PollingAnswer>* handshake = nullptr) {
    auto seen = std::make_shared<FakeDialect::Seen>();
    std::shared_ptr<EngineIoSession> session = context_.engine_io_sessions.Create(
        context_, net::make_strand(net::any_io_executor(io_.get_executor())),
        std::make_unique<FakeDialect>(seen), ConnectionRequest{.path = "/socket.io/"},
        common::NewTraceContext());
    std::optional<PollingAnswer> answer;
    session->Start([&](PollingAnswer got) { answer = std::move(got); });
    RunUntil([&] { return answer.has_value(); });
    if (handshake != nullptr) {
      *handshake = answer;
    }
    seen_ = seen;
    return session;
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

  // Runs everything that is ready now.
  void RunReady() {
    io_.restart();
    io_.poll();
  }

  PollingAnswer Post(EngineIoSession& session, std::string body) {
    std::optional<PollingAnswer> answer;
    session.Post(std::move(body), [&](PollingAnswer got) { answer = std::move(got); });
    RunUntil([&] { return answer.has_value(); });
    return answer.value_or(PollingAnswer{});
  }

  PollingAnswer Poll(EngineIoSession& session) {
    std::optional<PollingAnswer> answer;
    session.Poll([&](PollingAnswer got) { answer = std::move(got); });
    RunUntil([&] { return answer.has_value(); });
    return answer.value_or(PollingAnswer{});
  }

  // Runs `action` on the session's strand, as the dialect session and the chat do.
  template <class Action>
  void OnStrand(EngineIoSession& session, Action action) {
    bool done = false;
    net::post(session.executor(), [&] {
      action();
      done = true;
    });
    RunUntil([&] { return done; });
  }

  double FramesSent(const char* type) {
    return context_.metrics.Dialect("socketio").FrameSent(type).Value();
  }

  net::io_context io_;
  ServerContext context_;
  std::shared_ptr<FakeDialect::Seen> seen_;
};

TEST_F(EngineIoSessionTest, TheHandshakeIsTheDialectsOpenPacketForARegisteredSession) {
  std::optional<PollingAnswer> handshake;
  std::shared_ptr<EngineIoSession> session = Open(&handshake);
  ASSERT_TRUE(handshake.has_value());
  EXPECT_EQ(handshake->status, 200u);
  EXPECT_EQ(handshake->content_type, "text/plain; charset=UTF-8");
  EXPECT_EQ(handshake->body, "0open");
  EXPECT_EQ(session->sid().size(), 20u);
  EXPECT_EQ(session->request().transport_session_id, session->sid());
  EXPECT_EQ(context_.engine_io_sessions.Find(session->sid()), session);
  EXPECT_EQ(context_.metrics.Dialect("socketio").connections.Value(), 1);
}

TEST_F(EngineIoSessionTest, APostDeliversEachPacketAndAPollTakesWhatWaitsInOrder) {
  std::shared_ptr<EngineIoSession> session = Open();
  const PollingAnswer posted = Post(*session,
                                    "40/chat,\x1e"
                                    "42/chat,[\"x\"]");
  EXPECT_EQ(posted.status, 200u);
  EXPECT_EQ(posted.body, "ok");
  EXPECT_EQ(seen_->frames, (std::vector<std::string>{"40/chat,", "42/chat,[\"x\"]"}));

  OnStrand(*session, [&] {
    seen_->host->Send("40/chat,{}");
    session->Emit(Pong{}, std::nullopt);
  });
  const PollingAnswer polled = Poll(*session);
  EXPECT_EQ(polled.status, 200u);
  EXPECT_EQ(polled.content_type, "text/plain; charset=UTF-8");
  EXPECT_EQ(polled.body,
            "40/chat,{}\x1e"
            "4pong");
}

TEST_F(EngineIoSessionTest, AWaitingPollIsAnsweredByTheNextFrame) {
  std::shared_ptr<EngineIoSession> session = Open();
  std::optional<PollingAnswer> polled;
  session->Poll([&](PollingAnswer got) { polled = std::move(got); });
  RunReady();
  EXPECT_FALSE(polled.has_value()) << "a poll with nothing to take waits";
  net::post(session->executor(), [&] { session->Emit(Pong{}, std::nullopt); });
  RunUntil([&] { return polled.has_value(); });
  EXPECT_EQ(polled->body, "4pong");
}

TEST_F(EngineIoSessionTest, EveryFrameAPollTakesIsCountedAsSent) {
  const double protocol_before = FramesSent("protocol");
  const double pongs_before = FramesSent("pong");
  std::shared_ptr<EngineIoSession> session = Open();
  EXPECT_EQ(FramesSent("protocol"), protocol_before + 1) << "the open packet";
  OnStrand(*session, [&] {
    session->Emit(Pong{}, std::nullopt);
    session->Emit(Pong{}, std::nullopt);
  });
  // Queued is not sent: a client that never polls was sent nothing.
  EXPECT_EQ(FramesSent("pong"), pongs_before);
  EXPECT_EQ(Poll(*session).body,
            "4pong\x1e"
            "4pong");
  EXPECT_EQ(FramesSent("pong"), pongs_before + 2);
}

TEST_F(EngineIoSessionTest, TwoPollsAtOnceEndTheSession) {
  std::shared_ptr<EngineIoSession> session = Open();
  std::optional<PollingAnswer> first;
  session->Poll([&](PollingAnswer got) { first = std::move(got); });
  RunReady();
  const PollingAnswer second = Poll(*session);
  RunUntil([&] { return first.has_value(); });
  EXPECT_EQ(second.status, 400u);
  EXPECT_EQ(second.body, R"({"code":3,"message":"Bad request"})");
  EXPECT_EQ(first->body, "1") << "the waiting poll is told the session closed";
  EXPECT_TRUE(seen_->closed);
  EXPECT_EQ(context_.engine_io_sessions.Find(session->sid()), nullptr);
  EXPECT_EQ(context_.metrics.Dialect("socketio").connections.Value(), 0);

  const PollingAnswer after = Poll(*session);
  EXPECT_EQ(after.status, 400u);
  EXPECT_EQ(after.body, R"({"code":1,"message":"Session ID unknown"})");
}

TEST_F(EngineIoSessionTest, AClosingDialectsLastFramesAndTheClosePacketWaitForTheNextPoll) {
  std::shared_ptr<EngineIoSession> session = Open();
  OnStrand(*session, [&] {
    seen_->host->Send("44/chat,{\"message\":\"bye\"}");
    seen_->host->Close(CloseCode::kPolicy);
    // Nothing is sent after the close.
    seen_->host->Send("42/chat,[\"late\"]");
  });
  EXPECT_FALSE(seen_->closed) << "the session lingers for its client's next poll";
  EXPECT_EQ(Poll(*session).body,
            "44/chat,{\"message\":\"bye\"}\x1e"
            "1");
  EXPECT_TRUE(seen_->closed);
  EXPECT_EQ(Poll(*session).body, R"({"code":1,"message":"Session ID unknown"})");
}

TEST_F(EngineIoSessionTest, AMalformedPayloadIsABadRequestThatEndsTheSession) {
  std::shared_ptr<EngineIoSession> session = Open();
  const PollingAnswer posted = Post(*session,
                                    "4ok\x1e"
                                    "9nonsense");
  EXPECT_EQ(posted.status, 400u);
  EXPECT_TRUE(seen_->frames.empty()) << "no packet of a broken payload is delivered";
  EXPECT_TRUE(seen_->closed);
  EXPECT_EQ(context_.engine_io_sessions.Find(session->sid()), nullptr);
}

TEST_F(EngineIoSessionTest, APayloadOverMaxPayloadIsRefusedWith413AndEndsTheSession) {
  context_.limits.engine_io.max_payload = 16;
  std::shared_ptr<EngineIoSession> session = Open();
  EXPECT_EQ(Post(*session, "4sixteen-bytes!!").status, 200u);
  const PollingAnswer posted = Post(*session, "4seventeen-bytes!");
  EXPECT_EQ(posted.status, 413u);
  EXPECT_EQ(seen_->frames, std::vector<std::string>{"4sixteen-bytes!!"});
  EXPECT_TRUE(seen_->closed);
}

TEST_F(EngineIoSessionTest, AClientThatStopsPollingIsClosedOnceItsQueueIsOverTheByteCap) {
  context_.limits.outbound.max_bytes = 64;
  std::shared_ptr<EngineIoSession> session = Open();
  OnStrand(*session, [&] {
    for (int i = 0; i < 16 && !seen_->closed; ++i) {
      session->Emit(Pong{}, std::nullopt);
    }
  });
  EXPECT_TRUE(seen_->closed);
  EXPECT_EQ(context_.engine_io_sessions.Find(session->sid()), nullptr);
  // Nobody reads a closed session: a turn waiting for room goes on at once.
  bool resumed = false;
  OnStrand(*session, [&] { session->WhenWritable([&] { resumed = true; }); });
  EXPECT_TRUE(resumed);
}

TEST_F(EngineIoSessionTest, SessionsCountAgainstMaxConnectionsUntilTheyEnd) {
  context_.limits.max_connections = 1;
  std::shared_ptr<EngineIoSession> first = Open();
  EXPECT_EQ(context_.open_websockets.load(), 1);

  std::optional<PollingAnswer> refused;
  std::shared_ptr<EngineIoSession> second = Open(&refused);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 503u);
  EXPECT_FALSE(seen_->host != nullptr) << "the refused session's dialect never opened";
  EXPECT_EQ(context_.engine_io_sessions.Find(second->sid()), nullptr);
  EXPECT_EQ(context_.engine_io_sessions.size(), 1u);
  EXPECT_EQ(context_.open_websockets.load(), 1);

  // Once the first ends, its place is free.
  first->Shutdown(CloseCode::kGoingAway);
  RunUntil([&] { return context_.open_websockets.load() == 0; });
  std::optional<PollingAnswer> third;
  Open(&third);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->status, 200u);
  EXPECT_EQ(context_.open_websockets.load(), 1);
}

TEST_F(EngineIoSessionTest, ShutdownTellsAWaitingPollTheSessionClosed) {
  std::shared_ptr<EngineIoSession> session = Open();
  std::optional<PollingAnswer> polled;
  session->Poll([&](PollingAnswer got) { polled = std::move(got); });
  RunReady();
  ASSERT_FALSE(polled.has_value());
  // What the server shuts down with (the edge draining): a close packet makes the client
  // reconnect, to another replica.
  session->Shutdown(CloseCode::kGoingAway);
  RunUntil([&] { return polled.has_value(); });
  EXPECT_EQ(polled->body, "1");
  EXPECT_TRUE(seen_->closed);
  EXPECT_EQ(Poll(*session).body, R"({"code":1,"message":"Session ID unknown"})");
}

}  // namespace
}  // namespace parley::edge
