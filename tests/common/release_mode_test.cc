#include "common/release_mode.h"

#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::common {
namespace {

// Takes two locks in both orders: a lock-order inversion Abseil's detection reports.
void LockInBothOrders() {
  absl::Mutex first;
  absl::Mutex second;
  {
    absl::MutexLock a(&first);
    absl::MutexLock b(&second);
  }
  {
    absl::MutexLock b(&second);
    absl::MutexLock a(&first);
  }
}

// Shows that the build's Abseil checks lock order at all; otherwise the next test would prove
// nothing.
TEST(ReleaseModeDeathTest, ThisAbseilReportsALockOrderInversion) {
  EXPECT_DEATH(
      {
        absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
        LockInBothOrders();
      },
      "Potential Mutex deadlock");
}

// What the services' main() does first: the lock graph is no longer consulted.
TEST(ReleaseModeDeathTest, DisablingDeadlockDetectionLetsTheInversionPassUnseen) {
  EXPECT_EXIT(
      {
        absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
        DisableMutexDeadlockDetection();
        LockInBothOrders();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), ::testing::Not(::testing::HasSubstr("deadlock")));
}

}  // namespace
}  // namespace parley::common
