#include "edge/protocol/ai_chat_session.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge/fake_dialect_host.h"

namespace parley::edge {
namespace {

using ::testing::ElementsAre;

class AiChatSessionTest : public ::testing::Test {
 protected:
  AiChatSessionTest() : session_(/*chats_per_minute=*/2, [this] { return now_; }) {
    session_.Open(host_);
  }

  testing::FakeChat& chat() { return host_.fake_chat(); }
  const SendMessage& Sent(size_t index) { return std::get<SendMessage>(chat().commands.at(index)); }
  Frames Encode(const Event& event) {
    Frames frames;
    session_.Encode(event, frames);
    return frames;
  }

  absl::Time now_ = absl::FromUnixSeconds(1767225600);
  testing::FakeDialectHost host_;
  AiChatSession session_;
};

TEST_F(AiChatSessionTest, TheDialectsBudgetReplacesTheConnectionsOne) {
  ASSERT_TRUE(host_.options.messages_per_minute.has_value());
  EXPECT_LE(*host_.options.messages_per_minute, 0);
}

TEST_F(AiChatSessionTest, AModelTheServiceLacksIsAnsweredByItsDefault) {
  EXPECT_EQ(host_.options.unknown_model, UnknownModel::kUseDefault);
}

TEST_F(AiChatSessionTest, OneConnectionIsOneConversation) {
  session_.OnFrame(R"({"type":"chat","message":"One","model":"gpt-4o"})", FrameType::kText);
  ASSERT_EQ(chat().commands.size(), 1u);
  EXPECT_EQ(Sent(0).conversation_id, "");
  EXPECT_EQ(Sent(0).model, "gpt-4o");
  // A chat sent before the first is stored continues it too, once it exists.
  session_.OnFrame(R"({"type":"chat","message":"Two"})", FrameType::kText);
  EXPECT_EQ(chat().commands.size(), 1u);
  EXPECT_TRUE(Encode(Ack{Sent(0).id, "conv-1", "u1"}).empty());
  ASSERT_EQ(chat().commands.size(), 2u);
  EXPECT_EQ(Sent(1).content, "Two");
  EXPECT_EQ(Sent(1).conversation_id, "conv-1");
  EXPECT_NE(Sent(0).id, Sent(1).id);
}

TEST_F(AiChatSessionTest, WhenTheFirstChatFailsTheNextOneCreatesTheConversation) {
  session_.OnFrame(R"({"type":"chat","message":"One"})", FrameType::kText);
  session_.OnFrame(R"({"type":"chat","message":"Two"})", FrameType::kText);
  EXPECT_THAT(Encode(ErrorEvent{ErrorCode::kStorageUnavailable, "down", Sent(0).id}),
              ElementsAre(ai_chat::ErrorFrame("down")));
  ASSERT_EQ(chat().commands.size(), 2u);
  EXPECT_EQ(Sent(1).conversation_id, "");
}

TEST_F(AiChatSessionTest, PingsAreAnsweredAndDoNotCount) {
  for (int i = 0; i < 5; ++i) {
    session_.OnFrame(R"({"type":"ping"})", FrameType::kText);
  }
  EXPECT_EQ(chat().commands.size(), 5u);
  EXPECT_TRUE(std::holds_alternative<Ping>(chat().commands[0]));
  EXPECT_FALSE(host_.closed.has_value());
  EXPECT_THAT(Encode(Pong{}), ElementsAre(ai_chat::PongFrame()));
}

TEST_F(AiChatSessionTest, TheChatPastTheBudgetIsRefusedAndClosesTheConnection) {
  session_.OnFrame(R"({"type":"chat","message":"One"})", FrameType::kText);
  Encode(Ack{Sent(0).id, "conv-1", "u1"});
  session_.OnFrame(R"({"type":"chat","message":"Two"})", FrameType::kText);
  EXPECT_FALSE(host_.closed.has_value());
  session_.OnFrame(R"({"type":"chat","message":"Three"})", FrameType::kText);
  EXPECT_EQ(chat().commands.size(), 2u);
  EXPECT_THAT(host_.sent, ElementsAre(R"({"type":"error","message":"Rate limit exceeded"})"));
  EXPECT_EQ(host_.closed, CloseCode::kPolicy);
  // Nothing after the close.
  session_.OnFrame(R"({"type":"chat","message":"Four"})", FrameType::kText);
  EXPECT_EQ(chat().commands.size(), 2u);
}

TEST_F(AiChatSessionTest, TheBudgetRefillsOverTheMinute) {
  session_.OnFrame(R"({"type":"chat","message":"One"})", FrameType::kText);
  Encode(Ack{Sent(0).id, "conv-1", "u1"});
  session_.OnFrame(R"({"type":"chat","message":"Two"})", FrameType::kText);
  now_ += absl::Seconds(30);
  session_.OnFrame(R"({"type":"chat","message":"Three"})", FrameType::kText);
  EXPECT_EQ(chat().commands.size(), 3u);
  EXPECT_FALSE(host_.closed.has_value());
}

TEST_F(AiChatSessionTest, WrongFramesAreRejectedAndDoNotCount) {
  for (int i = 0; i < 4; ++i) {
    session_.OnFrame(R"({"type":"chat"})", FrameType::kText);
  }
  EXPECT_EQ(chat().rejected.size(), 4u);
  EXPECT_FALSE(host_.closed.has_value());
}

}  // namespace
}  // namespace parley::edge
