#include "edge/limits/user_limits.h"

#include <gtest/gtest.h>

#include <optional>
#include <thread>
#include <vector>

namespace parley::edge {
namespace {

class UserLimitsTest : public ::testing::Test {
 protected:
  UserLimitsOptions Options() {
    UserLimitsOptions options;
    options.messages_per_minute = 2;
    options.message_burst = 2;
    options.max_concurrent_turns = 2;
    options.sweep_interval = absl::Minutes(1);
    options.clock = [this] { return now_; };
    return options;
  }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(UserLimitsTest, LimitsMessagesPerUserIndependently) {
  UserLimits limits(Options());
  EXPECT_TRUE(limits.AcquireMessage("alice").allowed);
  EXPECT_TRUE(limits.AcquireMessage("alice").allowed);
  RateDecision refused = limits.AcquireMessage("alice");
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, absl::Seconds(30));
  EXPECT_TRUE(limits.AcquireMessage("bob").allowed);
  now_ += absl::Seconds(30);
  EXPECT_TRUE(limits.AcquireMessage("alice").allowed);
}

TEST_F(UserLimitsTest, CountsConcurrentTurnsAndReleasesOnDestruction) {
  UserLimits limits(Options());
  absl::StatusOr<TurnSlot> first = limits.AcquireTurn("alice");
  absl::StatusOr<TurnSlot> second = limits.AcquireTurn("alice");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(limits.ActiveTurns("alice"), 2);
  absl::StatusOr<TurnSlot> third = limits.AcquireTurn("alice");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(limits.AcquireTurn("bob").ok());  // released at once: a temporary

  // Moving a slot does not release it; destroying it does.
  TurnSlot moved = *std::move(first);
  EXPECT_EQ(limits.ActiveTurns("alice"), 2);
  { TurnSlot gone = std::move(moved); }
  EXPECT_EQ(limits.ActiveTurns("alice"), 1);
  EXPECT_TRUE(limits.AcquireTurn("alice").ok());

  second->Release();
  second->Release();  // harmless
  EXPECT_EQ(limits.ActiveTurns("alice"), 0);
}

TEST_F(UserLimitsTest, ForgetsIdleUsersSoMemoryStaysBounded) {
  UserLimits limits(Options());
  for (int i = 0; i < 1000; ++i) {
    limits.AcquireMessage("user-" + std::to_string(i));
  }
  absl::StatusOr<TurnSlot> running = limits.AcquireTurn("busy");
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(limits.TrackedUsers(), 1001u);

  // Each user took one token, which is back after 30 s.
  now_ += absl::Seconds(29);
  limits.Sweep();
  EXPECT_EQ(limits.TrackedUsers(), 1001u);
  // A sweep interval after the last sweep, the next call sweeps by itself.
  now_ += absl::Minutes(1);
  limits.AcquireMessage("newcomer");
  EXPECT_EQ(limits.TrackedUsers(), 2u);  // "busy" has a running turn, and the newcomer

  running->Release();
  now_ += absl::Minutes(2);
  limits.Sweep();
  EXPECT_EQ(limits.TrackedUsers(), 0u);
}

TEST_F(UserLimitsTest, ForgettingAUserChangesNoDecision) {
  UserLimits limits(Options());
  EXPECT_TRUE(limits.AcquireMessage("alice").allowed);
  EXPECT_TRUE(limits.AcquireMessage("alice").allowed);
  now_ += absl::Seconds(59);
  limits.Sweep();
  EXPECT_EQ(limits.TrackedUsers(), 1u);  // not yet refilled: must be kept
  EXPECT_TRUE(limits.AcquireMessage("alice").allowed);
  EXPECT_FALSE(limits.AcquireMessage("alice").allowed);
}

TEST_F(UserLimitsTest, SlotOutlivingTheRegistryIsSafe) {
  std::optional<TurnSlot> slot;
  {
    UserLimits limits(Options());
    absl::StatusOr<TurnSlot> acquired = limits.AcquireTurn("alice");
    ASSERT_TRUE(acquired.ok());
    slot = *std::move(acquired);
  }
  slot.reset();
}

TEST_F(UserLimitsTest, ZeroDisablesLimits) {
  UserLimitsOptions options = Options();
  options.messages_per_minute = 0;
  options.max_concurrent_turns = 0;
  UserLimits limits(options);
  std::vector<TurnSlot> slots;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(limits.AcquireMessage("alice").allowed);
    absl::StatusOr<TurnSlot> slot = limits.AcquireTurn("alice");
    ASSERT_TRUE(slot.ok());
    slots.push_back(*std::move(slot));
  }
}

TEST_F(UserLimitsTest, ConcurrentAcquireNeverExceedsTheMaximum) {
  UserLimitsOptions options = Options();
  options.max_concurrent_turns = 3;
  UserLimits limits(options);
  std::atomic<int> over{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        absl::StatusOr<TurnSlot> slot = limits.AcquireTurn("alice");
        if (slot.ok() && limits.ActiveTurns("alice") > 3) {
          ++over;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(over.load(), 0);
  EXPECT_EQ(limits.ActiveTurns("alice"), 0);
}

}  // namespace
}  // namespace parley::edge
