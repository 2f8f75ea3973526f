#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge/clients/inference_client.h"
#include "edge/clients/persistence_client.h"
#include "edge/metrics.h"
#include "edge/protocol/native_codec.h"
#include "edge/turn/turn.h"
#include "edge/turn/turn_tracker.h"

namespace parley::edge {

// Open WebSocket connections, so shutdown can close each with 1001.
class ConnectionRegistry {
 public:
  uint64_t Add(std::function<void()> close) {
    absl::MutexLock lock(&mutex_);
    open_[next_key_] = std::move(close);
    return next_key_++;
  }
  void Remove(uint64_t key) {
    absl::MutexLock lock(&mutex_);
    open_.erase(key);
  }
  void CloseAll() {
    std::map<uint64_t, std::function<void()>> open;
    {
      absl::MutexLock lock(&mutex_);
      open = open_;
    }
    for (auto& [key, close] : open) {
      close();
    }
  }
  bool WaitUntilEmpty(absl::Duration timeout) {
    absl::MutexLock lock(&mutex_);
    auto empty = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return open_.empty(); };
    return mutex_.AwaitWithTimeout(absl::Condition(&empty), timeout);
  }

 private:
  absl::Mutex mutex_;
  std::map<uint64_t, std::function<void()>> open_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_key_ ABSL_GUARDED_BY(mutex_) = 1;
};

// Everything sessions share. Owned by EdgeServer, which outlives every session.
struct ServerContext {
  EdgeMetrics metrics;
  TurnTracker tracker;
  ConnectionRegistry connections;
  NativeCodec native_codec;
  std::unique_ptr<PersistenceClient> persistence;
  std::unique_ptr<InferenceClient> inference;
  TurnDeps turn_deps;
  // Until token authentication exists, every connection is a development user.
  bool allow_anonymous = true;
  // Set on SIGTERM: readiness fails and no new turn starts.
  std::atomic<bool> draining{false};
};

}  // namespace parley::edge
