#include "common/release_mode.h"

#include "absl/synchronization/mutex.h"

namespace parley::common {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace parley::common
