#include "persistence/thread_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace parley::persistence {
namespace {

TEST(ThreadPoolTest, RefusesNewWorkOnceTheQueueIsFullButRunsEverythingItTook) {
  std::atomic<int> ran{0};
  absl::Notification started;
  absl::Notification release;
  {
    ThreadPool pool(/*threads=*/1, /*max_queued=*/2);
    ASSERT_TRUE(pool.TrySubmit([&] {
      started.Notify();
      release.WaitForNotification();
      ++ran;
    }));
    started.WaitForNotification();
    // The only thread is busy: two may wait, the third is refused.
    EXPECT_TRUE(pool.TrySubmit([&] { ++ran; }));
    EXPECT_TRUE(pool.TrySubmit([&] { ++ran; }));
    EXPECT_FALSE(pool.TrySubmit([&] { ++ran; }));
    EXPECT_EQ(pool.queued(), 2u);
    // The next step of admitted work is never refused.
    pool.Submit([&] { ++ran; });
    EXPECT_EQ(pool.queued(), 3u);
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 4);
}

TEST(ThreadPoolTest, ZeroMeansNoBound) {
  std::atomic<int> ran{0};
  absl::Notification release;
  {
    ThreadPool pool(/*threads=*/1, /*max_queued=*/0);
    ASSERT_TRUE(pool.TrySubmit([&] { release.WaitForNotification(); }));
    for (int i = 0; i < 10000; ++i) {
      ASSERT_TRUE(pool.TrySubmit([&] { ++ran; }));
    }
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 10000);
}

}  // namespace
}  // namespace parley::persistence
