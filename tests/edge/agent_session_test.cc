#include "edge/protocol/agent_session.h"

#include <string>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge/fake_dialect_host.h"

namespace parley::edge {
namespace {

using ::parley::edge::testing::FakeDialectHost;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kQuery[] = "question=Show+top+incidents&dataset=incidents&model=x-ai%2Fgrok";

Frames Encode(AgentSession& session, const Event& event) {
  Frames frames;
  session.Encode(event, frames);
  return frames;
}

TEST(AgentSessionTest, AWebSocketAsksTheQueryStringsQuestionWhenItOpens) {
  FakeDialectHost host;
  host.mutable_request().query = kQuery;
  AgentSession session(AgentSession::Transport::kWebSocket);
  session.Open(host);

  EXPECT_THAT(host.sent, ElementsAre(R"({"type":"start","message":"Starting..."})"));
  // Closing the socket is the client's Stop; its model names are its own.
  EXPECT_TRUE(host.options.cancel_turns_on_close);
  EXPECT_EQ(host.options.unknown_model, UnknownModel::kUseDefault);
  ASSERT_EQ(host.fake_chat().commands.size(), 1u);
  const SendMessage* message = std::get_if<SendMessage>(&host.fake_chat().commands[0]);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->content, "Show top incidents");
  EXPECT_EQ(message->model, "x-ai/grok");
  EXPECT_FALSE(message->id.empty());
  EXPECT_EQ(message->conversation_id, "");
  EXPECT_EQ(message->conversation_metadata.at("dataset"), "incidents");
  EXPECT_THAT(message->system_context, HasSubstr("\"incidents\""));

  EXPECT_THAT(Encode(session, Ack{message->id, "conv-1", "user-1"}),
              ElementsAre(R"({"type":"progress","stage":"stored","message":"Question stored"})"));
  EXPECT_FALSE(host.closed.has_value());
}

TEST(AgentSessionTest, EachConnectionIsItsOwnMessage) {
  FakeDialectHost first;
  FakeDialectHost second;
  first.mutable_request().query = kQuery;
  second.mutable_request().query = kQuery;
  AgentSession a(AgentSession::Transport::kWebSocket);
  AgentSession b(AgentSession::Transport::kWebSocket);
  a.Open(first);
  b.Open(second);
  EXPECT_NE(std::get<SendMessage>(first.fake_chat().commands[0]).id,
            std::get<SendMessage>(second.fake_chat().commands[0]).id);
}

TEST(AgentSessionTest, NoQuestionIsAnErrorAndAPolicyClose) {
  for (const char* query : {"", "dataset=all", "question=", "question=+%20+"}) {
    FakeDialectHost host;
    host.mutable_request().query = query;
    AgentSession session(AgentSession::Transport::kWebSocket);
    session.Open(host);
    ASSERT_EQ(host.sent.size(), 1u) << query;
    EXPECT_THAT(host.sent[0], HasSubstr(R"("type":"error")"));
    EXPECT_THAT(host.sent[0], HasSubstr("question"));
    EXPECT_EQ(host.closed, CloseCode::kPolicy);
    EXPECT_EQ(host.chat(), nullptr) << "no turn without a question";
  }
}

TEST(AgentSessionTest, TheTurnsEndClosesTheConnectionOnceItsFramesAreQueued) {
  FakeDialectHost host;
  host.mutable_request().query = kQuery;
  AgentSession session(AgentSession::Transport::kWebSocket);
  session.Open(host);
  Encode(session, StreamStart{"conv-1", "reply-1", "m"});
  Encode(session, StreamToken{"reply-1", 1, "Hi"});
  const Frames end = Encode(session, StreamComplete{"reply-1", 1, "stop", 3, 1});
  // progress done, complete, stream_end.
  ASSERT_EQ(end.size(), 3u);
  EXPECT_EQ(end.back(), R"({"type":"stream_end"})");
  // Encode runs inside the transport's queueing: the close comes after, on the strand.
  EXPECT_FALSE(host.closed.has_value());
  host.RunPosted();
  EXPECT_EQ(host.closed, CloseCode::kNormal);
}

TEST(AgentSessionTest, AnEventStreamNamesTheReplyInEveryEventId) {
  FakeDialectHost host;
  host.mutable_request().query = kQuery;
  AgentSession session(AgentSession::Transport::kEventStream);
  session.Open(host);
  // A dropped event stream is reconnected, not a Stop.
  EXPECT_FALSE(host.options.cancel_turns_on_close);
  // Held until the reply has an id to name.
  EXPECT_THAT(host.sent, IsEmpty());
  EXPECT_THAT(Encode(session, Ack{"a", "conv-1", "user-1"}), IsEmpty());
  const Frames started = Encode(session, StreamStart{"conv-1", "reply-1", "m"});
  ASSERT_EQ(started.size(), 3u);
  EXPECT_EQ(started[0],
            "id: reply-1:0\ndata: {\"type\":\"start\",\"message\":\"Starting...\"}\n\n");
  EXPECT_THAT(started[1], HasSubstr("id: reply-1:1\ndata: {\"type\":\"progress\""));
  EXPECT_THAT(started[2], HasSubstr("id: reply-1:2\ndata: {\"type\":\"progress\""));
  EXPECT_THAT(
      Encode(session, StreamToken{"reply-1", 1, "Hello"}),
      ElementsAre("id: reply-1:8\ndata: {\"type\":\"analysis_chunk\",\"chunk\":\"Hello\"}\n\n"));
  // Waiting for a slow model: traffic for proxies, nothing for EventSource.
  EXPECT_THAT(Encode(session, Heartbeat{"reply-1"}), ElementsAre(": waiting for the model\n\n"));
}

TEST(AgentSessionTest, AnEventStreamTurnThatFailsBeforeItsReplySendsEventsWithoutIds) {
  FakeDialectHost host;
  host.mutable_request().query = kQuery;
  AgentSession session(AgentSession::Transport::kEventStream);
  session.Open(host);
  const Frames frames = Encode(session, ErrorEvent{ErrorCode::kRateLimited, "slow down", "a", 10});
  EXPECT_THAT(frames, ElementsAre("data: {\"type\":\"start\",\"message\":\"Starting...\"}\n\n",
                                  "data: {\"type\":\"error\",\"message\":\"slow down\"}\n\n",
                                  "data: {\"type\":\"stream_end\"}\n\n"));
  host.RunPosted();
  EXPECT_EQ(host.closed, CloseCode::kTryAgainLater);
}

TEST(AgentSessionTest, AContinuationFollowsTheStoredReplyAndAsksNothing) {
  FakeDialectHost host;
  host.mutable_request().query = kQuery;
  std::unique_ptr<AgentSession> session =
      AgentSession::Continuing(EventStreamPosition{"reply-1", 1}, "conv-1");
  session->Open(host);
  ASSERT_EQ(host.fake_chat().commands.size(), 1u);
  const ResumeStream* resume = std::get_if<ResumeStream>(&host.fake_chat().commands[0]);
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(resume->message_id, "reply-1");
  EXPECT_EQ(resume->last_seq, 0);
  // It had seen `progress stored`, not `generating`.
  ASSERT_EQ(host.sent.size(), 1u);
  EXPECT_THAT(host.sent[0], HasSubstr("id: reply-1:2\ndata: {\"type\":\"progress\","
                                      "\"stage\":\"generating\""));
  EXPECT_THAT(Encode(*session, Resumed{"reply-1", true}), IsEmpty());
}

TEST(AgentSessionTest, AContinuationOfAReplyThatVanishedEndsWithAnError) {
  FakeDialectHost host;
  std::unique_ptr<AgentSession> session =
      AgentSession::Continuing(EventStreamPosition{"reply-1", 40}, "conv-1");
  session->Open(host);
  const Frames frames = Encode(*session, Resumed{"reply-1", false});
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_THAT(frames[0], HasSubstr("cannot be found"));
  EXPECT_THAT(frames[1], HasSubstr("stream_end"));
  host.RunPosted();
  EXPECT_EQ(host.closed, CloseCode::kPolicy);
}

}  // namespace
}  // namespace parley::edge
