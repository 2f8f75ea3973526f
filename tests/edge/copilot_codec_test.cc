#include "edge/protocol/copilot_codec.h"

#include <string>
#include <variant>
#include <vector>

#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "gtest/gtest.h"

namespace parley::edge::copilot {
namespace {

namespace json = boost::json;

constexpr int64_t kNow = 1767225600123;  // 2026-01-01T00:00:00.123Z

json::object Parse(const std::string& frame) {
  boost::system::error_code ec;
  json::value value = json::parse(frame, ec);
  EXPECT_FALSE(ec) << frame;
  return value.is_object() ? value.get_object() : json::object();
}

CopilotRequest DecodeOk(const std::string& frame) {
  std::variant<CopilotRequest, ErrorEvent> decoded = DecodeFrame(frame);
  if (const ErrorEvent* error = std::get_if<ErrorEvent>(&decoded)) {
    ADD_FAILURE() << frame << " -> " << error->message;
    return {};
  }
  return std::get<CopilotRequest>(decoded);
}

std::string DecodeError(const std::string& frame) {
  std::variant<CopilotRequest, ErrorEvent> decoded = DecodeFrame(frame);
  if (!std::holds_alternative<ErrorEvent>(decoded)) {
    ADD_FAILURE() << frame << " decoded without error";
    return "";
  }
  return std::get<ErrorEvent>(decoded).message;
}

std::vector<json::object> Frames(const CopilotEncoder::Output& out) {
  std::vector<json::object> frames;
  for (const std::string& frame : out.frames) {
    frames.push_back(Parse(frame));
  }
  return frames;
}

TEST(CopilotCodecTest, DecodesTheHooksMessage) {
  const CopilotRequest request = DecodeOk(
      R"({"action":"message","message":"Add a new supplier in Asia","conversationId":"conv-123","streaming":true})");
  EXPECT_EQ(request.message.content, "Add a new supplier in Asia");
  EXPECT_EQ(request.message.conversation_id, "conv-123");
  EXPECT_TRUE(request.streaming);
  EXPECT_EQ(request.message.id, "");
}

TEST(CopilotCodecTest, StreamingDefaultsToTrueAndTheConversationToANewOne) {
  const CopilotRequest request = DecodeOk(R"({"action":"message","message":"Hi"})");
  EXPECT_TRUE(request.streaming);
  EXPECT_EQ(request.message.conversation_id, "");
  const CopilotRequest explicit_nulls =
      DecodeOk(R"({"action":"message","message":"Hi","conversationId":null,"streaming":null})");
  EXPECT_TRUE(explicit_nulls.streaming);
  EXPECT_FALSE(DecodeOk(R"({"action":"message","message":"Hi","streaming":false})").streaming);
}

TEST(CopilotCodecTest, RefusesWhatIsNotAMessageWithAReason) {
  EXPECT_EQ(DecodeError("not json"), "frame is not valid JSON");
  EXPECT_EQ(DecodeError("[1]"), "frame must be a JSON object");
  EXPECT_EQ(DecodeError(R"({"message":"Hi"})"), "frame needs a string \"action\"");
  EXPECT_EQ(DecodeError(R"({"action":"subscribe"})"),
            "unknown action \"subscribe\"; the one action is \"message\"");
  EXPECT_EQ(DecodeError(R"({"action":"message","message":""})"),
            "\"message\" needs a non-empty string \"message\"");
  EXPECT_EQ(DecodeError(R"({"action":"message","message":"Hi","conversationId":7})"),
            "\"conversationId\" must be a string");
  EXPECT_EQ(DecodeError(R"({"action":"message","message":"Hi","streaming":"yes"})"),
            "\"streaming\" must be a boolean");
}

TEST(CopilotCodecTest, FramesCarryExactlyTheDialectsFields) {
  EXPECT_EQ(Parse(AcknowledgmentFrame(kNow)),
            Parse(R"({"type":"acknowledgment","message":"Message received. Processing...",)"
                  R"("timestamp":1767225600123})"));
  EXPECT_EQ(Parse(TypingFrame(kNow)), Parse(R"({"type":"typing","timestamp":1767225600123})"));
  EXPECT_EQ(Parse(StreamTokenFrame("I've ", "conv-123", kNow)),
            Parse(R"({"type":"stream_token","token":"I've ","conversationId":"conv-123",)"
                  R"("timestamp":1767225600123})"));
  EXPECT_EQ(Parse(SuggestionsFrame({"A?", "B?"}, "conv-123", kNow)),
            Parse(R"({"type":"suggestions","suggestions":["A?","B?"],"conversationId":"conv-123",)"
                  R"("timestamp":1767225600123})"));
  EXPECT_EQ(
      Parse(ErrorFrame("Failed to process request", kNow)),
      Parse(R"({"type":"error","error":"Failed to process request","timestamp":1767225600123})"));
  EXPECT_EQ(Parse(StreamInterruptedFrame("c", "the model stopped", "I've added a new supp", kNow)),
            Parse(R"({"type":"stream_interrupted","conversationId":"c","timestamp":1767225600123,)"
                  R"("error":"the model stopped","partialResponse":"I've added a new supp"})"));
}

TEST(CopilotCodecTest, AStreamedReplyIsAcknowledgedStartedTokenisedAndCompleted) {
  CopilotEncoder encoder;
  encoder.Expect("r1", /*streaming=*/true, "Add a supplier");
  std::vector<json::object> frames = Frames(encoder.Encode(Ack{"r1", "conv-1", "u1"}, kNow));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].at("type"), "acknowledgment");
  EXPECT_EQ(frames[1].at("type"), "typing");

  frames = Frames(encoder.Encode(StreamStart{"conv-1", "a1", "gpt-4o"}, kNow));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], Parse(R"({"type":"stream_start","conversationId":"conv-1",)"
                             R"("timestamp":1767225600123,"metadata":{"model":"gpt-4o",)"
                             R"("messageId":"a1"}})"));

  for (const char* token : {"I've ", "added it."}) {
    frames = Frames(encoder.Encode(StreamToken{"a1", 1, token}, kNow));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].at("token"), token);
    EXPECT_EQ(frames[0].at("conversationId"), "conv-1");
  }
  EXPECT_TRUE(encoder.Encode(StreamReasoning{"a1", "thinking"}, kNow).frames.empty());
  EXPECT_TRUE(encoder.Encode(Heartbeat{"a1"}, kNow).frames.empty());

  const CopilotEncoder::Output done =
      encoder.Encode(StreamComplete{"a1", 2, "stop", /*prompt_tokens=*/9, /*completion=*/4}, kNow);
  frames = Frames(done);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], Parse(R"({"type":"stream_complete","conversationId":"conv-1",)"
                             R"("timestamp":1767225600123,"metadata":{"model":"gpt-4o",)"
                             R"("tokenCount":4,"actionSuccess":true,"messageId":"a1",)"
                             R"("finishReason":"stop"}})"));
  ASSERT_TRUE(done.completed.has_value());
  EXPECT_EQ(done.completed->conversation_id, "conv-1");
  EXPECT_EQ(done.completed->model, "gpt-4o");
  EXPECT_EQ(done.completed->question, "Add a supplier");
  EXPECT_EQ(done.completed->answer, "I've added it.");
  EXPECT_EQ(encoder.pending(), 0u);
}

TEST(CopilotCodecTest, WithoutStreamingTheWholeReplyIsOneMessage) {
  CopilotEncoder encoder;
  encoder.Expect("r1", /*streaming=*/false, "Hi");
  EXPECT_EQ(encoder.Encode(Ack{"r1", "c", "u1"}, kNow).frames.size(), 2u);
  EXPECT_TRUE(encoder.Encode(StreamStart{"c", "a1", "m"}, kNow).frames.empty());
  EXPECT_TRUE(encoder.Encode(StreamToken{"a1", 1, "Hel"}, kNow).frames.empty());
  EXPECT_TRUE(encoder.Encode(StreamToken{"a1", 2, "lo"}, kNow).frames.empty());
  const CopilotEncoder::Output done = encoder.Encode(StreamComplete{"a1", 2, "stop", 1, 2}, kNow);
  const std::vector<json::object> frames = Frames(done);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], Parse(R"({"type":"message","content":"Hello","conversationId":"c",)"
                             R"("timestamp":1767225600123,"metadata":{"model":"m",)"
                             R"("tokenCount":2,"actionSuccess":true,"messageId":"a1",)"
                             R"("finishReason":"stop"}})"));
  EXPECT_TRUE(done.completed.has_value());
}

TEST(CopilotCodecTest, AnInterruptedReplyCarriesItsPartialTextAndAsksForNoSuggestions) {
  CopilotEncoder encoder;
  encoder.Expect("r1", true, "Hi");
  encoder.Encode(Ack{"r1", "c", "u1"}, kNow);
  encoder.Encode(StreamStart{"c", "a1", "m"}, kNow);
  encoder.Encode(StreamToken{"a1", 1, "I've added a new supp"}, kNow);
  const CopilotEncoder::Output out =
      encoder.Encode(StreamInterrupted{"a1", 1, "inference_unavailable", "the model stopped: reset",
                                       "I've added a new supp"},
                     kNow);
  const std::vector<json::object> frames = Frames(out);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].at("type"), "stream_interrupted");
  EXPECT_EQ(frames[0].at("conversationId"), "c");
  EXPECT_EQ(frames[0].at("error"), "the model stopped: reset");
  EXPECT_EQ(frames[0].at("partialResponse"), "I've added a new supp");
  EXPECT_FALSE(out.completed.has_value());
  EXPECT_EQ(encoder.pending(), 0u);
}

TEST(CopilotCodecTest, AFailedRequestIsAnErrorAndIsForgotten) {
  CopilotEncoder encoder;
  encoder.Expect("r1", true, "Hi");
  const std::vector<json::object> frames = Frames(encoder.Encode(
      ErrorEvent{ErrorCode::kRateLimited, "too many messages; retry later", "r1", 2000}, kNow));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], Parse(R"({"type":"error","error":"too many messages; retry later",)"
                             R"("timestamp":1767225600123})"));
  EXPECT_EQ(encoder.pending(), 0u);
}

TEST(CopilotCodecTest, TwoRepliesAtOnceKeepTheirOwnConversationsAndModes) {
  CopilotEncoder encoder;
  encoder.Expect("r1", true, "one");
  encoder.Expect("r2", false, "two");
  encoder.Encode(Ack{"r2", "c2", "u2"}, kNow);
  encoder.Encode(Ack{"r1", "c1", "u1"}, kNow);
  EXPECT_EQ(encoder.Encode(StreamStart{"c2", "a2", "m"}, kNow).frames.size(), 0u);
  EXPECT_EQ(encoder.Encode(StreamStart{"c1", "a1", "m"}, kNow).frames.size(), 1u);
  EXPECT_EQ(encoder.Encode(StreamToken{"a2", 1, "two"}, kNow).frames.size(), 0u);
  const std::vector<json::object> token = Frames(encoder.Encode(StreamToken{"a1", 1, "one"}, kNow));
  ASSERT_EQ(token.size(), 1u);
  EXPECT_EQ(token[0].at("conversationId"), "c1");
  const std::vector<json::object> second =
      Frames(encoder.Encode(StreamComplete{"a2", 1, "stop", 0, 1}, kNow));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].at("type"), "message");
  EXPECT_EQ(second[0].at("content"), "two");
  EXPECT_EQ(second[0].at("conversationId"), "c2");
}

}  // namespace
}  // namespace parley::edge::copilot
