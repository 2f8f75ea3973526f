#include "edge/protocol/ai_chat_codec.h"

#include <string>
#include <variant>
#include <vector>

#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::edge::ai_chat {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::string DecodeError(const std::string& frame) {
  std::variant<Command, ErrorEvent> decoded = DecodeFrame(frame);
  if (!std::holds_alternative<ErrorEvent>(decoded)) {
    ADD_FAILURE() << frame << " decoded without error";
    return "";
  }
  return std::get<ErrorEvent>(decoded).message;
}

TEST(AiChatCodecTest, DecodesTheChatAndPing) {
  std::variant<Command, ErrorEvent> decoded =
      DecodeFrame(R"({"type":"chat","message":"What is the weather today?","model":"gpt-4o"})");
  ASSERT_TRUE(std::holds_alternative<Command>(decoded));
  const SendMessage* message = std::get_if<SendMessage>(&std::get<Command>(decoded));
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->content, "What is the weather today?");
  EXPECT_EQ(message->model, "gpt-4o");
  EXPECT_EQ(message->conversation_id, "");

  decoded = DecodeFrame(R"({"type":"chat","message":"Hi"})");
  ASSERT_TRUE(std::holds_alternative<Command>(decoded));
  EXPECT_EQ(std::get<SendMessage>(std::get<Command>(decoded)).model, "");

  decoded = DecodeFrame(R"({"type":"ping"})");
  ASSERT_TRUE(std::holds_alternative<Command>(decoded));
  EXPECT_TRUE(std::holds_alternative<Ping>(std::get<Command>(decoded)));
}

TEST(AiChatCodecTest, RefusesWhatIsNotAChatWithAReason) {
  EXPECT_EQ(DecodeError("{"), "frame is not valid JSON");
  EXPECT_EQ(DecodeError(R"("chat")"), "frame must be a JSON object");
  EXPECT_EQ(DecodeError(R"({"message":"Hi"})"), "frame needs a string \"type\"");
  EXPECT_EQ(DecodeError(R"({"type":"batch","messages":[]})"), "unknown frame type \"batch\"");
  EXPECT_EQ(DecodeError(R"({"type":"chat"})"), "\"chat\" needs a non-empty string \"message\"");
  EXPECT_EQ(DecodeError(R"({"type":"chat","message":"Hi","model":4})"),
            "\"model\" must be a string");
}

TEST(AiChatCodecTest, FramesAreTheDialects) {
  EXPECT_EQ(json::parse(ChunkFrame("The weather")),
            json::parse(R"({"type":"chunk","content":"The weather"})"));
  EXPECT_EQ(json::parse(DoneFrame()), json::parse(R"({"type":"done"})"));
  EXPECT_EQ(json::parse(ErrorFrame(kRateLimitExceeded)),
            json::parse(R"({"type":"error","message":"Rate limit exceeded"})"));
  EXPECT_EQ(json::parse(PongFrame()), json::parse(R"({"type":"pong"})"));
}

TEST(AiChatCodecTest, AReplyIsChunksThenDone) {
  AiChatEncoder encoder;
  EXPECT_THAT(encoder.Encode(Ack{"r1", "c", "u"}), IsEmpty());
  EXPECT_THAT(encoder.Encode(StreamStart{"c", "a1", "m"}), IsEmpty());
  EXPECT_THAT(encoder.Encode(Heartbeat{"a1"}), IsEmpty());
  EXPECT_THAT(encoder.Encode(StreamToken{"a1", 1, "The "}), ElementsAre(ChunkFrame("The ")));
  EXPECT_THAT(encoder.Encode(StreamReasoning{"a1", "hmm"}), IsEmpty());
  EXPECT_THAT(encoder.Encode(StreamToken{"a1", 2, "weather"}), ElementsAre(ChunkFrame("weather")));
  EXPECT_THAT(encoder.Encode(StreamComplete{"a1", 2, "stop", 1, 2}), ElementsAre(DoneFrame()));
  EXPECT_EQ(encoder.streaming(), 0u);
  EXPECT_THAT(encoder.Encode(Pong{}), ElementsAre(PongFrame()));
}

TEST(AiChatCodecTest, AScriptOpeningSplitAcrossChunksIsSanitised) {
  AiChatEncoder encoder;
  encoder.Encode(StreamStart{"c", "a1", "m"});
  EXPECT_THAT(encoder.Encode(StreamToken{"a1", 1, "Try <SCR"}), ElementsAre(ChunkFrame("Try ")));
  EXPECT_THAT(encoder.Encode(StreamToken{"a1", 2, "IPT>x</script> <"}),
              ElementsAre(ChunkFrame("&lt;script>x</script> ")));
  // The held-back "<" goes out before done.
  EXPECT_THAT(encoder.Encode(StreamComplete{"a1", 2, "stop", 1, 2}),
              ElementsAre(ChunkFrame("<"), DoneFrame()));
}

TEST(AiChatCodecTest, AnInterruptedReplyEndsWithItsRestThenAnError) {
  AiChatEncoder encoder;
  encoder.Encode(StreamStart{"c", "a1", "m"});
  EXPECT_THAT(encoder.Encode(StreamToken{"a1", 1, "partial <scr"}),
              ElementsAre(ChunkFrame("partial ")));
  EXPECT_THAT(encoder.Encode(StreamInterrupted{"a1", 1, "inference_unavailable",
                                               "the model stopped: reset", "partial <scr"}),
              ElementsAre(ChunkFrame("<scr"), ErrorFrame("the model stopped: reset")));
  EXPECT_THAT(encoder.Encode(ErrorEvent{ErrorCode::kInvalidFrame, "bad", ""}),
              ElementsAre(ErrorFrame("bad")));
}

}  // namespace
}  // namespace parley::edge::ai_chat
