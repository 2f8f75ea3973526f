#include "edge/protocol/agent_stream.h"

#include <string>
#include <vector>

#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

namespace json = boost::json;

json::object Parse(const AgentEvent& event) { return json::parse(event.json).as_object(); }

std::vector<std::string> Types(const std::vector<AgentEvent>& events) {
  std::vector<std::string> types;
  for (const AgentEvent& event : events) {
    const json::object frame = Parse(event);
    EXPECT_EQ(std::string(frame.at("type").as_string()), event.type);
    std::string type(event.type);
    if (event.type == "progress") {
      type.append(":").append(frame.at("stage").as_string());
    }
    types.push_back(type);
  }
  return types;
}

void Append(std::vector<AgentEvent>& events, AgentOutput out) {
  for (AgentEvent& event : out.events) {
    events.push_back(std::move(event));
  }
}

// The text a client assembles from the chunks of one kind.
std::string Joined(const std::vector<AgentEvent>& events, absl::string_view type,
                   absl::string_view field) {
  std::string text;
  for (const AgentEvent& event : events) {
    if (event.type == type) {
      text +=
          std::string(Parse(event).at(json::string_view(field.data(), field.size())).as_string());
    }
  }
  return text;
}

// A reply whose fence lines are cut across tokens.
const std::vector<std::string> kTokens = {"Look:\n``", "`py\nx = 1\n", "y = 2\n``", "`\nDone."};
constexpr absl::string_view kText = "Look:\n```py\nx = 1\ny = 2\n```\nDone.";

std::vector<Event> TurnEvents() {
  std::vector<Event> events = {
      Ack{"client-1", "conv-1", "user-1"},
      StreamStart{"conv-1", "reply-1", "sim-small"},
      StreamReasoning{"reply-1", "Thinking about x."},
  };
  int64_t seq = 0;
  for (const std::string& token : kTokens) {
    events.push_back(StreamToken{"reply-1", ++seq, token});
  }
  events.push_back(StreamComplete{"reply-1", seq, "stop", 11, 7});
  return events;
}

TEST(AgentStreamTest, ATurnBecomesTheDialectsEventsInOrder) {
  AgentStream stream;
  std::vector<AgentEvent> events = stream.Opening();
  std::optional<CloseCode> close;
  for (const Event& event : TurnEvents()) {
    ASSERT_FALSE(close.has_value()) << "events after the close";
    AgentOutput out = stream.Map(event);
    close = out.close_code;
    Append(events, std::move(out));
  }
  EXPECT_THAT(
      Types(events),
      ::testing::ElementsAre("start", "progress:stored", "progress:generating", "chain_of_thought",
                             "analysis_chunk", "code_chunk", "code_chunk", "code_generated",
                             "analysis_chunk", "progress:done", "complete", "stream_end"));
  EXPECT_EQ(close, CloseCode::kNormal);
  EXPECT_TRUE(stream.ended());
  EXPECT_EQ(stream.reply_id(), "reply-1");

  EXPECT_EQ(Parse(events[0]).at("message").as_string(), "Starting...");
  EXPECT_EQ(Parse(events[2]).at("message").as_string(), "Generating the answer with sim-small");
  EXPECT_EQ(Parse(events[3]).at("content").as_string(), "Thinking about x.");
  EXPECT_EQ(Joined(events, "analysis_chunk", "chunk"), "Look:\nDone.");
  EXPECT_EQ(Joined(events, "code_chunk", "chunk"), "x = 1\ny = 2\n");
  EXPECT_EQ(Joined(events, "code_generated", "code"), "x = 1\ny = 2\n");
  EXPECT_EQ(json::serialize(Parse(events[10])),
            json::serialize(json::parse(
                R"({"type":"complete","data":{"conversationId":"conv-1","messageId":"reply-1",)"
                R"("answer":"Look:\n```py\nx = 1\ny = 2\n```\nDone.","finishReason":"stop",)"
                R"("usage":{"promptTokens":11,"completionTokens":7}}})")));
  EXPECT_EQ(events[11].json, R"({"type":"stream_end"})");
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_LE(events[i - 1].position, events[i].position) << i;
  }
}

TEST(AgentStreamTest, NothingFollowsTheEnd) {
  AgentStream stream;
  for (const Event& event : TurnEvents()) {
    stream.Map(event);
  }
  EXPECT_TRUE(stream.Map(StreamToken{"reply-1", 9, "late"}).events.empty());
  EXPECT_TRUE(stream.Map(ErrorEvent{ErrorCode::kInternal, "late", ""}).events.empty());
}

TEST(AgentStreamTest, AFailedTurnSendsErrorThenStreamEndAndSaysHowToClose) {
  AgentStream stream;
  stream.Map(Ack{"client-1", "conv-1", "user-1"});
  AgentOutput out = stream.Map(ErrorEvent{ErrorCode::kRateLimited, "slow down", "client-1", 100});
  EXPECT_THAT(Types(out.events), ::testing::ElementsAre("error", "stream_end"));
  EXPECT_EQ(out.events[0].json, R"({"type":"error","message":"slow down"})");
  EXPECT_EQ(out.close_code, CloseCode::kTryAgainLater);
}

TEST(AgentStreamTest, AnInterruptedReplyClosesItsOpenBlockThenReportsTheError) {
  AgentStream stream;
  stream.Map(Ack{"client-1", "conv-1", "user-1"});
  stream.Map(StreamStart{"conv-1", "reply-1", "m"});
  std::vector<AgentEvent> events;
  Append(events, stream.Map(StreamToken{"reply-1", 1, "a\n```\nx"}));
  AgentOutput end =
      stream.Map(StreamInterrupted{"reply-1", 1, "inference_unavailable", "the model stopped", ""});
  EXPECT_EQ(end.close_code, CloseCode::kInternalError);
  Append(events, std::move(end));
  EXPECT_THAT(Types(events), ::testing::ElementsAre("analysis_chunk", "code_chunk",
                                                    "code_generated", "error", "stream_end"));
  EXPECT_EQ(Joined(events, "code_generated", "code"), "x");
  EXPECT_EQ(Joined(events, "error", "message"), "the model stopped");
}

TEST(AgentStreamTest, HeartbeatsAskForKeepAliveOnly) {
  AgentStream stream;
  AgentOutput out = stream.Map(Heartbeat{"reply-1"});
  EXPECT_TRUE(out.keep_alive);
  EXPECT_TRUE(out.events.empty());
  EXPECT_FALSE(out.close_code.has_value());
}

TEST(AgentStreamTest, ErrorsCloseWithTheCodeOfTheirFault) {
  EXPECT_EQ(AgentCloseCode(ErrorCode::kTooManyTurns), CloseCode::kTryAgainLater);
  EXPECT_EQ(AgentCloseCode(ErrorCode::kShuttingDown), CloseCode::kGoingAway);
  EXPECT_EQ(AgentCloseCode(ErrorCode::kStorageUnavailable), CloseCode::kInternalError);
  EXPECT_EQ(AgentCloseCode(ErrorCode::kDeadlineExceeded), CloseCode::kInternalError);
  EXPECT_EQ(AgentCloseCode(ErrorCode::kNotFound), CloseCode::kPolicy);
  EXPECT_EQ(AgentErrorEvent("no \"question\"").json,
            R"({"type":"error","message":"no \"question\""})");
}

// A client that lost its stream after any event and continues from a replay of the stored reply
// (one merged delta, as persistence may send it) has every event exactly once.
TEST(AgentStreamTest, AContinuationAfterAnyEventCompletesTheStreamExactly) {
  AgentStream live;
  std::vector<AgentEvent> full = live.Opening();
  for (const Event& event : TurnEvents()) {
    Append(full, live.Map(event));
  }
  // Reasoning is shown live only: a continuation cannot repeat it.
  for (size_t cut = 0; cut < full.size(); ++cut) {
    AgentStream continuation = AgentStream::Continuing("reply-1", "conv-1", full[cut].position);
    std::vector<AgentEvent> seen(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut) + 1);
    for (AgentEvent& event : continuation.Opening()) {
      seen.push_back(std::move(event));
    }
    Append(seen, continuation.Map(StreamToken{"reply-1", 4, std::string(kText)}));
    Append(seen, continuation.Map(StreamComplete{"reply-1", 4, "stop", 11, 7}));

    std::vector<std::string> expected_types = Types(full);
    std::vector<std::string> seen_types = Types(seen);
    if (full[cut].type == "stream_end") {
      // Continuing an ended reply says so again.
      expected_types.push_back("stream_end");
    }
    std::erase(expected_types, "chain_of_thought");
    std::erase(seen_types, "chain_of_thought");
    // Chunks may be cut differently; what they add up to may not.
    std::erase(expected_types, "analysis_chunk");
    std::erase(seen_types, "analysis_chunk");
    std::erase(expected_types, "code_chunk");
    std::erase(seen_types, "code_chunk");
    EXPECT_EQ(seen_types, expected_types) << "cut after event " << cut;
    EXPECT_EQ(Joined(seen, "analysis_chunk", "chunk"), "Look:\nDone.") << cut;
    EXPECT_EQ(Joined(seen, "code_chunk", "chunk"), "x = 1\ny = 2\n") << cut;
    EXPECT_EQ(Joined(seen, "code_generated", "code"), "x = 1\ny = 2\n") << cut;
    EXPECT_EQ(Joined(seen, "complete", "type"), "complete") << cut;
  }
}

TEST(AgentStreamTest, AContinuationAnswersWithTheWholeStoredText) {
  AgentStream continuation = AgentStream::Continuing("reply-1", "conv-1", 20);
  continuation.Map(StreamToken{"reply-1", 2, "Look:\n```py\n"});
  continuation.Map(StreamToken{"reply-1", 4, "x = 1\ny = 2\n```\nDone."});
  AgentOutput out = continuation.Map(StreamComplete{"reply-1", 4, "stop", 11, 7});
  ASSERT_THAT(Types(out.events), ::testing::Contains("complete"));
  for (const AgentEvent& event : out.events) {
    if (event.type == "complete") {
      const json::object data = Parse(event).at("data").as_object();
      EXPECT_EQ(std::string(data.at("answer").as_string()), kText);
      EXPECT_EQ(data.at("conversationId").as_string(), "conv-1");
      EXPECT_EQ(data.at("messageId").as_string(), "reply-1");
    }
  }
}

}  // namespace
}  // namespace parley::edge
