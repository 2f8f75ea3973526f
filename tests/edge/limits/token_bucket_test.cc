#include "edge/limits/token_bucket.h"

#include <gtest/gtest.h>

namespace parley::edge {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

TEST(TokenBucketTest, AllowsBurstThenRefusesWithRetryAfter) {
  TokenBucket bucket(/*per_minute=*/60, /*burst=*/3, kStart);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(bucket.TryAcquire(kStart).allowed) << i;
  }
  RateDecision refused = bucket.TryAcquire(kStart);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, absl::Seconds(1));
  // Half way to the next token.
  RateDecision later = bucket.TryAcquire(kStart + absl::Milliseconds(400));
  EXPECT_FALSE(later.allowed);
  EXPECT_EQ(later.retry_after, absl::Milliseconds(600));
  // Exactly when promised.
  EXPECT_TRUE(bucket.TryAcquire(kStart + absl::Seconds(1)).allowed);
  EXPECT_FALSE(bucket.TryAcquire(kStart + absl::Seconds(1)).allowed);
}

TEST(TokenBucketTest, SustainsTheConfiguredRate) {
  TokenBucket bucket(/*per_minute=*/100, /*burst=*/0, kStart);  // burst defaults to the rate
  int allowed = 0;
  // Ten minutes of a client sending every 100 ms (600/min): the first minute allows the burst
  // plus the refill, then exactly the rate.
  for (int i = 0; i < 6000; ++i) {
    if (bucket.TryAcquire(kStart + absl::Milliseconds(100) * i).allowed) {
      ++allowed;
    }
  }
  EXPECT_GE(allowed, 100 + 100 * 10 - 1);
  EXPECT_LE(allowed, 100 + 100 * 10);
}

TEST(TokenBucketTest, RefillsToBurstButNotBeyond) {
  TokenBucket bucket(/*per_minute=*/6, /*burst=*/2, kStart);
  EXPECT_TRUE(bucket.TryAcquire(kStart).allowed);
  EXPECT_TRUE(bucket.TryAcquire(kStart).allowed);
  EXPECT_FALSE(bucket.IsFull(kStart));
  absl::Time later = kStart + absl::Hours(1);
  EXPECT_TRUE(bucket.IsFull(later));
  EXPECT_TRUE(bucket.TryAcquire(later).allowed);
  EXPECT_TRUE(bucket.TryAcquire(later).allowed);
  RateDecision refused = bucket.TryAcquire(later);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, absl::Seconds(10));
}

TEST(TokenBucketTest, RetryAfterRoundsUpToMilliseconds) {
  TokenBucket bucket(/*per_minute=*/7, /*burst=*/1, kStart);  // 60/7 s is not whole ms
  EXPECT_TRUE(bucket.TryAcquire(kStart).allowed);
  RateDecision refused = bucket.TryAcquire(kStart);
  ASSERT_FALSE(refused.allowed);
  EXPECT_EQ(refused.RetryAfterMillis(), 8572);
  EXPECT_FALSE(bucket.TryAcquire(kStart + absl::Milliseconds(8571)).allowed);
  EXPECT_TRUE(bucket.TryAcquire(kStart + absl::Milliseconds(8572)).allowed);
}

TEST(TokenBucketTest, ZeroRateMeansUnlimited) {
  TokenBucket bucket(/*per_minute=*/0, /*burst=*/0, kStart);
  EXPECT_TRUE(bucket.unlimited());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(bucket.TryAcquire(kStart).allowed);
  }
}

TEST(TokenBucketTest, ClockGoingBackwardsDoesNotMintTokens) {
  TokenBucket bucket(/*per_minute=*/60, /*burst=*/1, kStart);
  EXPECT_TRUE(bucket.TryAcquire(kStart).allowed);
  EXPECT_FALSE(bucket.TryAcquire(kStart - absl::Seconds(30)).allowed);
  EXPECT_TRUE(bucket.TryAcquire(kStart + absl::Seconds(1)).allowed);
}

}  // namespace
}  // namespace parley::edge
