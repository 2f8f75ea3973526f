#include "inference/pending_chunks.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/inference/chunks.h"

namespace parley::inference {
namespace {

using testing::ReasoningChunk;
using testing::TextChunk;
using testing::UsageChunk;

TEST(PendingChunksTest, DeltasOfOneKindArrivingTogetherGoOutAsOneChunkInOrder) {
  PendingChunks pending;
  pending.Push(TextChunk("Hel"));
  pending.Push(TextChunk("lo, "));
  pending.Push(TextChunk("world"));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending.Pop().text_delta().text(), "Hello, world");
  EXPECT_TRUE(pending.empty());
}

TEST(PendingChunksTest, AChangeOfKindOrAChunkThatIsNoDeltaStartsANewChunk) {
  PendingChunks pending;
  pending.Push(ReasoningChunk("think "));
  pending.Push(ReasoningChunk("hard"));
  pending.Push(TextChunk("A"));
  pending.Push(TextChunk("B"));
  pending.Push(UsageChunk(7));
  pending.Push(TextChunk("late"));
  ASSERT_EQ(pending.size(), 4u);
  EXPECT_EQ(pending.Pop().reasoning_delta().text(), "think hard");
  EXPECT_EQ(pending.Pop().text_delta().text(), "AB");
  EXPECT_EQ(pending.Pop().usage().completion_tokens(), 7);
  EXPECT_EQ(pending.Pop().text_delta().text(), "late");
}

v1::StreamEnd End(int completion_tokens) {
  v1::StreamEnd end;
  end.mutable_usage()->set_completion_tokens(completion_tokens);
  end.mutable_finish()->set_reason(v1::FINISH_REASON_STOP);
  return end;
}

TEST(PendingChunksTest, TheEndRidesOnTheLastWaitingDeltaAndNothingMergesAfterIt) {
  PendingChunks pending;
  pending.Push(TextChunk("Hel"));
  pending.Push(TextChunk("lo"));
  pending.PushEnd(End(2));
  // Nothing follows a finish from a well-behaved engine; a delta that did would stay after it.
  pending.Push(TextChunk("!"));
  ASSERT_EQ(pending.size(), 2u);
  const v1::GenerateResponse last = pending.Pop();
  EXPECT_EQ(last.text_delta().text(), "Hello");
  EXPECT_EQ(last.end().usage().completion_tokens(), 2);
  EXPECT_EQ(last.end().finish().reason(), v1::FINISH_REASON_STOP);
  const v1::GenerateResponse late = pending.Pop();
  EXPECT_EQ(late.text_delta().text(), "!");
  EXPECT_FALSE(late.has_end());
}

TEST(PendingChunksTest, TheEndGoesAloneWhenNoDeltaWaits) {
  PendingChunks pending;
  pending.PushEnd(End(3));
  ASSERT_EQ(pending.size(), 1u);
  const v1::GenerateResponse end = pending.Pop();
  EXPECT_EQ(end.chunk_case(), v1::GenerateResponse::CHUNK_NOT_SET);
  EXPECT_EQ(end.end().usage().completion_tokens(), 3);
}

TEST(PendingChunksTest, NoMergedChunkGrowsPastTheLimitAndNoTextIsLost) {
  PendingChunks pending;
  const std::string piece(1000, 'x');
  const int pieces = 40;  // 40,000 bytes: more than two merged chunks' worth.
  for (int i = 0; i < pieces; ++i) {
    pending.Push(TextChunk(piece));
  }
  size_t total = 0;
  int chunks = 0;
  while (!pending.empty()) {
    const std::string text = pending.Pop().text_delta().text();
    EXPECT_LE(text.size(), PendingChunks::kMaxMergedChunkBytes);
    total += text.size();
    ++chunks;
  }
  EXPECT_EQ(total, piece.size() * pieces);
  EXPECT_EQ(chunks, 3);
}

TEST(PendingChunksTest, TheEngineIsHeldBackOnceEnoughTextOrEnoughChunksWait) {
  // One long chunk (an engine may send text in any size) fills the byte budget alone.
  PendingChunks by_bytes;
  by_bytes.Push(TextChunk(std::string(PendingChunks::kMaxBytes - 1, 'x')));
  EXPECT_TRUE(by_bytes.HasRoom());
  by_bytes.Push(ReasoningChunk("y"));
  EXPECT_FALSE(by_bytes.HasRoom());
  // A write completing makes room again.
  by_bytes.Pop();
  EXPECT_TRUE(by_bytes.HasRoom());
  by_bytes.Clear();
  EXPECT_TRUE(by_bytes.empty());
  EXPECT_TRUE(by_bytes.HasRoom());

  PendingChunks by_count;
  for (size_t i = 0; i < PendingChunks::kMaxChunks; ++i) {
    EXPECT_TRUE(by_count.HasRoom());
    by_count.Push(i % 2 == 0 ? TextChunk("t") : ReasoningChunk("r"));
  }
  EXPECT_FALSE(by_count.HasRoom());
}

}  // namespace
}  // namespace parley::inference
