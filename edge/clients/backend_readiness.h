#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/completion_queue.h"

namespace parley::edge {

// Holds calls to a backend until its channel is connected, for at most `timeout`.
//
// Without it a call made while the channel is in its reconnect back-off (the backend was
// restarted a moment ago) fails at once with gRPC's "connections to all backends failing", and
// one made while the backend hangs waits for the call's whole deadline (minutes, for a stream).
// With it a backend that comes back within `timeout` is invisible to callers, and one that does
// not fails them after `timeout` with an error that names the backend.
class BackendReadiness {
 public:
  // `backend` names the service in errors ("persistence", "inference").
  BackendReadiness(std::shared_ptr<grpc::Channel> channel, std::string backend,
                   absl::Duration timeout);
  ~BackendReadiness();
  BackendReadiness(const BackendReadiness&) = delete;
  BackendReadiness& operator=(const BackendReadiness&) = delete;

  // Calls `then` with OK once the channel is ready (at once, on this thread, when it already
  // is), or with UNAVAILABLE when it was not ready within the timeout. `then` must not block: it
  // may run on the readiness thread, which serves every waiter.
  void WhenReady(std::function<void(absl::Status)> then);
  // The same, but waits only until `deadline` when that comes before the timeout: for a call
  // that is worth nothing later (a typing signal).
  void WhenReady(std::function<void(absl::Status)> then, absl::Time deadline);

  absl::Duration timeout() const { return timeout_; }

 private:
  struct Waiter {
    absl::Time deadline;
    absl::Duration waited;  // From its start to its deadline, for the error.
    std::function<void(absl::Status)> then;
  };

  // Asks the channel to report its next state change, or the earliest waiter's deadline.
  void WatchLocked(grpc_connectivity_state observed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Run();

  const std::shared_ptr<grpc::Channel> channel_;
  const std::string backend_;
  const absl::Duration timeout_;
  grpc::CompletionQueue queue_;

  absl::Mutex mutex_;
  // In order of their deadlines.
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mutex_);
  bool watching_ ABSL_GUARDED_BY(mutex_) = false;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread thread_;
};

}  // namespace parley::edge
