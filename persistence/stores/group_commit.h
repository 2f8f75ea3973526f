#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace parley::persistence {

// Write transactions from many threads, committed together. A database with one writer (SQLite)
// pays a sync per commit; under load most of a write's time is that sync and the wait for the
// writer. Here a thread that finds the writer free commits at once, alone, as before; those that
// arrive while it commits wait, and the first of them then commits all of them in one
// transaction, one sync for the lot. No write waits for a timer: a batch is whatever queued
// during the commit before it. Each write keeps its own outcome (the committer runs each in a
// savepoint), and returns only once its batch is durable.
template <class Write>
class GroupCommit {
 public:
  // Runs `batch` (in arrival order) in one transaction and returns each write's status, in order.
  using Committer = std::function<std::vector<absl::Status>(const std::vector<const Write*>&)>;

  GroupCommit(size_t max_batch, Committer committer)
      : max_batch_(max_batch), committer_(std::move(committer)) {}

  // Blocks until `write` is committed (or failed) with its batch.
  absl::Status Run(const Write& write) {
    Waiter waiter{&write, this};
    absl::MutexLock lock(&mu_);
    queue_.push_back(&waiter);
    // A leader takes at most `max_batch_` of the oldest writes: it may have to lead more than one.
    while (!waiter.done) {
      mu_.Await(absl::Condition(&waiter, &Waiter::DoneOrWriterFree));
      if (!waiter.done) {
        CommitQueued();
      }
    }
    return waiter.status;
  }

  // Told the number of writes of each batch once it is committed, with the queue's lock held.
  void SetObserver(std::function<void(size_t writes)> observer) {
    absl::MutexLock lock(&mu_);
    observer_ = std::move(observer);
  }

  // Writes waiting for the commit in progress to end.
  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  struct Waiter {
    const Write* write;
    const GroupCommit* owner;
    bool done = false;
    absl::Status status;

    bool DoneOrWriterFree() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return done || !owner->committing_;
    }
  };

  // Leads one batch: the oldest queued writes (the caller's among them), outside the lock.
  void CommitQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    committing_ = true;
    const size_t size = std::min(queue_.size(), max_batch_);
    std::vector<Waiter*> batch(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(size));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(size));
    std::vector<const Write*> writes;
    writes.reserve(batch.size());
    for (const Waiter* waiter : batch) {
      writes.push_back(waiter->write);
    }
    mu_.Unlock();
    std::vector<absl::Status> statuses = committer_(writes);
    mu_.Lock();
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->status = i < statuses.size() ? std::move(statuses[i])
                                             : absl::InternalError("write left out of its batch");
      batch[i]->done = true;
    }
    committing_ = false;
    if (observer_) {
      observer_(batch.size());
    }
  }

  const size_t max_batch_;
  const Committer committer_;
  mutable absl::Mutex mu_;
  std::vector<Waiter*> queue_ ABSL_GUARDED_BY(mu_);
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(size_t)> observer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::persistence
