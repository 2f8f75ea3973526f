#pragma once

#include <functional>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace parley::edge {

// Counts the turns (and the other backend calls that post back to a
// connection's strand: history loads, readiness checks) in flight, so shutdown
// can let them finish, or cancel them, before the io_context and the gRPC
// channels go away.
class TurnTracker {
 public:
  // Registers a turn; `cancel` stops it. Returns a key for Remove().
  uint64_t Add(std::function<void()> cancel) {
    absl::MutexLock lock(&mutex_);
    running_[next_key_] = std::move(cancel);
    return next_key_++;
  }

  void Remove(uint64_t key) {
    absl::MutexLock lock(&mutex_);
    running_.erase(key);
  }

  size_t running() const {
    absl::MutexLock lock(&mutex_);
    return running_.size();
  }

  // Returns true when no turn is running, false if `timeout` passed first.
  bool WaitUntilIdle(absl::Duration timeout) const {
    absl::MutexLock lock(&mutex_);
    auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return running_.empty(); };
    return mutex_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  }

  void CancelAll() {
    std::map<uint64_t, std::function<void()>> running;
    {
      absl::MutexLock lock(&mutex_);
      running = running_;
    }
    for (auto& [key, cancel] : running) {
      cancel();
    }
  }

 private:
  mutable absl::Mutex mutex_;
  std::map<uint64_t, std::function<void()>> running_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_key_ ABSL_GUARDED_BY(mutex_) = 1;
};

}  // namespace parley::edge
