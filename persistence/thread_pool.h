#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace parley::persistence {

// Fixed set of threads for blocking store calls, so gRPC's threads never wait
// on a disk or a database. New work waits in a bounded queue: past the bound it
// is refused at once, so overload becomes an error the caller can act on
// (RESOURCE_EXHAUSTED) instead of latency and memory that grow without limit.
// Destruction runs what is queued, then joins.
class ThreadPool {
 public:
  // `max_queued`: tasks that may wait for a thread through TrySubmit; 0 means no bound.
  ThreadPool(int threads, size_t max_queued);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task` unless `max_queued` tasks already wait; false (and `task` dropped) then.
  bool TrySubmit(std::function<void()> task);
  // Queues `task` whatever the queue holds: for the next step of work already admitted (a
  // stream's store call), which the number of open streams bounds, and which must not fail
  // halfway because newer calls filled the queue.
  void Submit(std::function<void()> task);

  // Tasks waiting for a thread now.
  size_t queued() const;

 private:
  void Run();

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace parley::persistence
