// The outbound queue of one connection: water marks, byte cap, and lossless merging of a
// reply's token deltas while the client falls behind.
#include "edge/server/outbound_queue.h"

#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

// Frames the test can read back: "token <messageId> <seq> <text>" or the event's name.
class FakeEncoder : public EventEncoder {
 public:
  void Encode(const Event& event, Frames& frames) override {
    if (const StreamToken* token = std::get_if<StreamToken>(&event)) {
      return frames.push_back(
          absl::StrCat("token ", token->message_id, " ", token->seq, " ", token->token));
    }
    const absl::string_view name = EventName(event);
    frames.emplace_back(name.data(), name.size());
  }
};

OutboundLimits SmallLimits() {
  OutboundLimits limits;
  limits.low_water_frames = 2;
  limits.high_water_frames = 4;
  limits.high_water_bytes = 4096;
  limits.max_bytes = 16384;
  return limits;
}

class OutboundQueueTest : public ::testing::Test {
 protected:
  OutboundQueue::Pushed PushToken(const std::string& message_id, int64_t seq,
                                  const std::string& text) {
    return queue_.Push(StreamToken{message_id, seq, text}, std::nullopt);
  }

  // Writes every queued frame, as a client that reads everything would receive them.
  std::vector<std::string> WriteAll() {
    std::vector<std::string> written;
    while (const OutboundQueue::Frame* frame = queue_.StartWrite()) {
      written.push_back(frame->data);
      queue_.FinishWrite();
    }
    return written;
  }

  FakeEncoder encoder_;
  OutboundQueue queue_{SmallLimits(), encoder_};
};

TEST_F(OutboundQueueTest, KeepsEveryDeltaAsItsOwnFrameUpToTheLowWaterMark) {
  EXPECT_EQ(PushToken("m", 1, "a"), OutboundQueue::Pushed::kQueued);
  EXPECT_EQ(PushToken("m", 2, "b"), OutboundQueue::Pushed::kQueued);
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token m 1 a", "token m 2 b"}));
}

TEST_F(OutboundQueueTest, WorksTheSameAfterGivingBackItsMemory) {
  // Before anything was queued, between bursts, and with only the frame being written left.
  queue_.ReleaseMemory();
  EXPECT_EQ(queue_.frames(), 0u);
  EXPECT_EQ(queue_.StartWrite(), nullptr);
  PushToken("m", 1, "a");
  queue_.Push(StreamComplete{"m", 1, "stop"}, std::nullopt);
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token m 1 a", "stream_complete"}));
  queue_.ReleaseMemory();
  EXPECT_EQ(queue_.bytes(), 0u);
  PushToken("n", 1, "b");
  PushToken("n", 2, "c");
  const OutboundQueue::Frame* writing = queue_.StartWrite();
  ASSERT_NE(writing, nullptr);
  queue_.ReleaseMemory();
  EXPECT_EQ(writing->data, "token n 1 b");
  EXPECT_EQ(queue_.frames(), 2u);
  queue_.FinishWrite();
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token n 2 c"}));
  EXPECT_EQ(queue_.frames(), 0u);
  EXPECT_EQ(queue_.bytes(), 0u);
}

TEST_F(OutboundQueueTest, MergesDeltasAboveTheLowWaterMarkIntoOneFrameWithTheLastSeq) {
  PushToken("m", 1, "a");
  PushToken("m", 2, "b");
  PushToken("m", 3, "c");
  EXPECT_EQ(PushToken("m", 4, "d"), OutboundQueue::Pushed::kMerged);
  EXPECT_EQ(PushToken("m", 5, "e"), OutboundQueue::Pushed::kMerged);
  EXPECT_EQ(queue_.frames(), 3u);
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token m 1 a", "token m 2 b", "token m 5 cde"}));
}

TEST_F(OutboundQueueTest, NeverMergesIntoTheFrameBeingWritten) {
  PushToken("m", 1, "a");
  PushToken("m", 2, "b");
  PushToken("m", 3, "c");
  // The client is being sent seq 1; seqs 2 and 3 wait.
  const OutboundQueue::Frame* writing = queue_.StartWrite();
  ASSERT_NE(writing, nullptr);
  EXPECT_EQ(writing->data, "token m 1 a");
  EXPECT_EQ(PushToken("m", 4, "d"), OutboundQueue::Pushed::kMerged);
  EXPECT_EQ(writing->data, "token m 1 a");
  queue_.FinishWrite();
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token m 2 b", "token m 4 cd"}));
}

TEST_F(OutboundQueueTest, NoDeltaOvertakesAnotherEvent) {
  PushToken("m", 1, "a");
  PushToken("m", 2, "b");
  queue_.Push(StreamComplete{"other", 9, "stop"}, std::nullopt);
  EXPECT_EQ(PushToken("m", 3, "c"), OutboundQueue::Pushed::kQueued);
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token m 1 a", "token m 2 b", "stream_complete",
                                                  "token m 3 c"}));
}

TEST_F(OutboundQueueTest, MergesPastAnotherRepliesTokens) {
  PushToken("m", 1, "a");
  PushToken("n", 1, "x");
  PushToken("m", 2, "b");
  // Two replies interleave: each one's deltas still merge, in order, into its own frame.
  EXPECT_EQ(PushToken("n", 2, "y"), OutboundQueue::Pushed::kMerged);
  EXPECT_EQ(PushToken("m", 3, "c"), OutboundQueue::Pushed::kMerged);
  EXPECT_EQ(PushToken("n", 3, "z"), OutboundQueue::Pushed::kMerged);
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"token m 1 a", "token n 3 xyz", "token m 3 bc"}));
}

TEST_F(OutboundQueueTest, FullAtTheHighWaterMarkAndDrainedAtTheLowOne) {
  queue_.Push(Pong{}, std::nullopt);
  queue_.Push(Pong{}, std::nullopt);
  queue_.Push(Pong{}, std::nullopt);
  EXPECT_FALSE(queue_.Full());
  queue_.Push(Pong{}, std::nullopt);
  EXPECT_TRUE(queue_.Full());
  EXPECT_FALSE(queue_.Drained());
  // The frame being written still counts.
  queue_.StartWrite();
  queue_.FinishWrite();
  queue_.StartWrite();
  EXPECT_FALSE(queue_.Full());
  EXPECT_FALSE(queue_.Drained());
  queue_.FinishWrite();
  EXPECT_TRUE(queue_.Drained());
}

TEST_F(OutboundQueueTest, AMergedFrameFillsTheQueueByItsBytes) {
  PushToken("m", 1, "a");
  PushToken("m", 2, "b");
  PushToken("m", 3, "c");
  for (int64_t seq = 4; !queue_.Full(); ++seq) {
    ASSERT_EQ(PushToken("m", seq, std::string(100, 'x')), OutboundQueue::Pushed::kMerged);
  }
  EXPECT_EQ(queue_.frames(), 3u);
  EXPECT_GE(queue_.bytes(), 4096u);
}

TEST_F(OutboundQueueTest, ReportsWhenItHoldsMoreThanItsByteCap) {
  EXPECT_EQ(PushToken("m", 1, std::string(6000, 'a')), OutboundQueue::Pushed::kQueued);
  EXPECT_EQ(PushToken("n", 1, std::string(6000, 'b')), OutboundQueue::Pushed::kQueued);
  EXPECT_EQ(PushToken("o", 1, std::string(6000, 'c')), OutboundQueue::Pushed::kQueued);
  EXPECT_GT(queue_.bytes(), 16384u);
  EXPECT_EQ(PushToken("p", 1, "d"), OutboundQueue::Pushed::kOverLimit);
}

TEST_F(OutboundQueueTest, TakesOneFrameLargerThanTheCapWhenTheClientKeepsUp) {
  // E.g. a long history answer: it is not a sign of a client that stopped reading.
  EXPECT_EQ(PushToken("m", 1, std::string(20000, 'a')), OutboundQueue::Pushed::kQueued);
}

TEST_F(OutboundQueueTest, CountsSmallFramesAgainstTheByteCapToo) {
  OutboundQueue::Pushed pushed = OutboundQueue::Pushed::kQueued;
  int frames = 0;
  while (pushed != OutboundQueue::Pushed::kOverLimit && frames < 100000) {
    pushed = queue_.Push(Pong{}, std::nullopt);
    ++frames;
  }
  EXPECT_EQ(pushed, OutboundQueue::Pushed::kOverLimit);
  EXPECT_LT(frames, 1000);
}

TEST_F(OutboundQueueTest, DropQueuedKeepsOnlyTheFrameBeingWritten) {
  PushToken("m", 1, "a");
  PushToken("m", 2, "b");
  const OutboundQueue::Frame* writing = queue_.StartWrite();
  ASSERT_NE(writing, nullptr);
  queue_.DropQueued();
  EXPECT_EQ(queue_.frames(), 1u);
  EXPECT_EQ(writing->data, "token m 1 a");
  queue_.FinishWrite();
  EXPECT_EQ(queue_.frames(), 0u);
  EXPECT_EQ(queue_.bytes(), 0u);
  EXPECT_EQ(queue_.StartWrite(), nullptr);
}

// A dialect with state: numbers every frame it makes in the order it encoded the events, turns
// a token into one frame per character, and says nothing about a pong.
class CountingEncoder : public EventEncoder {
 public:
  void Encode(const Event& event, Frames& frames) override {
    if (std::holds_alternative<Pong>(event)) {
      return;
    }
    if (const StreamToken* token = std::get_if<StreamToken>(&event)) {
      for (char c : token->token) {
        frames.push_back(absl::StrCat(++encoded_, " ", std::string(1, c)));
      }
      return;
    }
    const absl::string_view name = EventName(event);
    frames.push_back(absl::StrCat(++encoded_, " ", name));
  }

 private:
  int encoded_ = 0;
};

class StatefulDialectQueueTest : public ::testing::Test {
 protected:
  std::vector<std::string> WriteAll() {
    std::vector<std::string> written;
    while (const OutboundQueue::Frame* frame = queue_.StartWrite()) {
      written.push_back(frame->data);
      queue_.FinishWrite();
    }
    return written;
  }

  CountingEncoder encoder_;
  OutboundQueue queue_{SmallLimits(), encoder_};
};

TEST_F(StatefulDialectQueueTest, EncodesEventsInTheOrderTheyCameThoughDeltasWaitToBeWritten) {
  queue_.Push(StreamToken{"m", 1, "ab"}, std::nullopt);
  queue_.Push(StreamComplete{"m", 1, "stop"}, std::nullopt);
  queue_.PushFrame("ping", "protocol");
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"1 a", "2 b", "3 stream_complete", "ping"}));
}

TEST_F(StatefulDialectQueueTest, AnEventMayBecomeNoFrameOrSeveral) {
  queue_.Push(Pong{}, std::nullopt);
  EXPECT_EQ(queue_.frames(), 0u);
  EXPECT_EQ(queue_.StartWrite(), nullptr);
  queue_.Push(StreamToken{"m", 1, ""}, std::nullopt);
  EXPECT_EQ(queue_.StartWrite(), nullptr);
  EXPECT_EQ(queue_.bytes(), 0u);
  queue_.Push(StreamToken{"m", 2, "xyz"}, std::nullopt);
  EXPECT_EQ(WriteAll(), (std::vector<std::string>{"1 x", "2 y", "3 z"}));
  EXPECT_EQ(queue_.bytes(), 0u);
}

}  // namespace
}  // namespace parley::edge
