#include "edge/protocol/copilot_session.h"

#include <string>
#include <vector>

#include "boost/json/parse.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge/fake_dialect_host.h"

namespace parley::edge {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kNow = 1767225600123;

// Records each generation asked for; the test finishes it.
class FakeSuggester final : public Suggester {
 public:
  struct Call {
    std::string model, question, answer, user_id;
    Done done;
  };

  std::function<void()> Suggest(absl::string_view model, absl::string_view question,
                                absl::string_view answer, const std::string& user_id,
                                boost::asio::any_io_executor, Done done) override {
    calls.push_back(
        {std::string(model), std::string(question), std::string(answer), user_id, std::move(done)});
    return [this] { ++stopped; };
  }

  std::vector<Call> calls;
  int stopped = 0;
};

class CopilotSessionTest : public ::testing::Test {
 protected:
  CopilotSessionTest() : session_(&suggester_, [] { return kNow; }) { session_.Open(host_); }

  testing::FakeChat& chat() { return host_.fake_chat(); }

  const SendMessage& SentMessage(size_t index) {
    return std::get<SendMessage>(chat().commands.at(index));
  }

  std::vector<std::string> Types(const Event& event) {
    Frames frames;
    session_.Encode(event, frames);
    std::vector<std::string> types;
    for (const std::string& frame : frames) {
      types.emplace_back(json::parse(frame).as_object().at("type").as_string());
    }
    return types;
  }

  // A whole streamed reply to the message at `index`.
  void Reply(size_t index, const std::string& conversation_id, const std::string& reply_id) {
    Types(Ack{SentMessage(index).id, conversation_id, "u-" + reply_id});
    Types(StreamStart{conversation_id, reply_id, "gpt-4o"});
    Types(StreamToken{reply_id, 1, "Answer."});
    Types(StreamComplete{reply_id, 1, "stop", 5, 2});
  }

  FakeSuggester suggester_;
  testing::FakeDialectHost host_;
  CopilotSession session_;
};

TEST_F(CopilotSessionTest, AModelTheServiceLacksIsAnsweredByItsDefault) {
  EXPECT_EQ(host_.options.unknown_model, UnknownModel::kUseDefault);
}

TEST_F(CopilotSessionTest, EachMessageIsATurnWithAKeyOfItsOwn) {
  session_.OnFrame(R"({"action":"message","message":"One","conversationId":"conv-123"})",
                   FrameType::kText);
  session_.OnFrame(R"({"action":"message","message":"Two"})", FrameType::kText);
  ASSERT_EQ(chat().commands.size(), 2u);
  EXPECT_EQ(SentMessage(0).content, "One");
  EXPECT_EQ(SentMessage(0).conversation_id, "conv-123");
  EXPECT_EQ(SentMessage(1).conversation_id, "");
  EXPECT_FALSE(SentMessage(0).id.empty());
  EXPECT_NE(SentMessage(0).id, SentMessage(1).id);
}

TEST_F(CopilotSessionTest, AWrongFrameIsRejectedWithItsReason) {
  session_.OnFrame("nope", FrameType::kText);
  session_.OnFrame("\x01", FrameType::kBinary);
  ASSERT_EQ(chat().rejected.size(), 2u);
  EXPECT_EQ(chat().rejected[0].message, "frame is not valid JSON");
  EXPECT_EQ(chat().rejected[1].message, "binary frames are not supported");
  EXPECT_THAT(chat().commands, IsEmpty());
}

TEST_F(CopilotSessionTest, SuggestionsAreAskedForAfterTheReplyAndSentWhenTheyCome) {
  session_.OnFrame(R"({"action":"message","message":"Add a supplier"})", FrameType::kText);
  EXPECT_THAT(Types(Ack{SentMessage(0).id, "c1", "u1"}), ElementsAre("acknowledgment", "typing"));
  EXPECT_THAT(Types(StreamStart{"c1", "a1", "gpt-4o"}), ElementsAre("stream_start"));
  EXPECT_THAT(Types(StreamToken{"a1", 1, "Added."}), ElementsAre("stream_token"));
  EXPECT_THAT(suggester_.calls, IsEmpty());
  EXPECT_THAT(Types(StreamComplete{"a1", 1, "stop", 5, 2}), ElementsAre("stream_complete"));
  ASSERT_EQ(suggester_.calls.size(), 1u);
  EXPECT_EQ(suggester_.calls[0].model, "gpt-4o");
  EXPECT_EQ(suggester_.calls[0].question, "Add a supplier");
  EXPECT_EQ(suggester_.calls[0].answer, "Added.");
  EXPECT_EQ(suggester_.calls[0].user_id, "alice");

  suggester_.calls[0].done({"What next?", "Why?"});
  ASSERT_EQ(host_.sent.size(), 1u);
  EXPECT_EQ(json::parse(host_.sent[0]),
            json::parse(R"({"type":"suggestions","suggestions":["What next?","Why?"],)"
                        R"("conversationId":"c1","timestamp":1767225600123})"));
}

TEST_F(CopilotSessionTest, NoSuggestionsSendNothingAndAnInterruptedReplyAsksForNone) {
  session_.OnFrame(R"({"action":"message","message":"One"})", FrameType::kText);
  Reply(0, "c1", "a1");
  ASSERT_EQ(suggester_.calls.size(), 1u);
  suggester_.calls[0].done({});
  EXPECT_THAT(host_.sent, IsEmpty());

  session_.OnFrame(R"({"action":"message","message":"Two","conversationId":"c1"})",
                   FrameType::kText);
  Types(Ack{SentMessage(1).id, "c1", "u2"});
  Types(StreamStart{"c1", "a2", "gpt-4o"});
  Types(StreamToken{"a2", 1, "Par"});
  EXPECT_THAT(Types(StreamInterrupted{"a2", 1, "inference_unavailable", "stopped", "Par"}),
              ElementsAre("stream_interrupted"));
  EXPECT_EQ(suggester_.calls.size(), 1u);
}

TEST_F(CopilotSessionTest, AMessageWaitsForTheLastRepliesSuggestions) {
  session_.OnFrame(R"({"action":"message","message":"One"})", FrameType::kText);
  Reply(0, "c1", "a1");
  session_.OnFrame(R"({"action":"message","message":"Two","conversationId":"c1"})",
                   FrameType::kText);
  session_.OnFrame(R"({"action":"message","message":"Three","conversationId":"c1"})",
                   FrameType::kText);
  EXPECT_EQ(chat().commands.size(), 1u);
  suggester_.calls[0].done({"More?"});
  EXPECT_EQ(host_.sent.size(), 1u);
  ASSERT_EQ(chat().commands.size(), 3u);
  EXPECT_EQ(SentMessage(1).content, "Two");
  EXPECT_EQ(SentMessage(2).content, "Three");
}

TEST_F(CopilotSessionTest, ClosingStopsTheGenerationAndItsAnswerGoesNowhere) {
  session_.OnFrame(R"({"action":"message","message":"One"})", FrameType::kText);
  Reply(0, "c1", "a1");
  session_.OnClosed();
  EXPECT_EQ(suggester_.stopped, 1);
  suggester_.calls[0].done({"Late?"});
  EXPECT_THAT(host_.sent, IsEmpty());
}

TEST(CopilotSessionWithoutSuggestionsTest, TheReplyEndsWithStreamComplete) {
  testing::FakeDialectHost host;
  CopilotSession session(nullptr, [] { return kNow; });
  session.Open(host);
  session.OnFrame(R"({"action":"message","message":"One"})", FrameType::kText);
  Frames frames;
  session.Encode(Ack{std::get<SendMessage>(host.fake_chat().commands[0]).id, "c", "u"}, frames);
  session.Encode(StreamStart{"c", "a", "m"}, frames);
  session.Encode(StreamComplete{"a", 0, "stop", 0, 0}, frames);
  EXPECT_EQ(frames.size(), 4u);
  session.OnFrame(R"({"action":"message","message":"Two"})", FrameType::kText);
  EXPECT_EQ(host.fake_chat().commands.size(), 2u);
  EXPECT_THAT(host.sent, IsEmpty());
}

}  // namespace
}  // namespace parley::edge
