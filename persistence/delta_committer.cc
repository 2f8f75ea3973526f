#include "persistence/delta_committer.h"

#include <utility>

#include "absl/time/clock.h"

namespace parley::persistence {

DeltaCommitter::DeltaCommitter(Store& store, PersistenceMetrics& metrics, Options options)
    : store_(store), metrics_(metrics), options_(options), thread_([this] { Run(); }) {}

DeltaCommitter::~DeltaCommitter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void DeltaCommitter::Submit(DeltaSink* sink, const std::string& message_id, int64_t first_seq,
                            std::vector<std::string> texts) {
  if (texts.empty()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (pending_.empty()) {
    oldest_ = now;
  }
  pending_deltas_ += static_cast<int>(texts.size());
  auto [it, inserted] = index_.try_emplace(sink, pending_.size());
  if (inserted) {
    pending_.push_back(Pending{sink, DeltaRun{message_id, first_seq, {}}, now});
  }
  std::vector<std::string>& run = pending_[it->second].run.texts;
  for (std::string& text : texts) {
    pending_bytes_ += text.size();
    run.push_back(std::move(text));
  }
}

bool DeltaCommitter::BatchReady() const {
  return stopping_ || pending_deltas_ >= options_.max_batch_deltas ||
         pending_bytes_ >= options_.max_batch_bytes;
}

void DeltaCommitter::Run() {
  while (true) {
    std::vector<Pending> batch;
    int batch_deltas = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](DeltaCommitter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->pending_.empty();
          },
          this));
      if (pending_.empty()) {
        return;
      }
      // Give other streams a moment to join this transaction.
      mu_.AwaitWithDeadline(absl::Condition(this, &DeltaCommitter::BatchReady),
                            oldest_ + options_.max_delay);
      batch.swap(pending_);
      index_.clear();
      batch_deltas = pending_deltas_;
      pending_deltas_ = 0;
      pending_bytes_ = 0;
    }
    std::vector<DeltaRun> runs;
    runs.reserve(batch.size());
    for (Pending& pending : batch) {
      runs.push_back(std::move(pending.run));
    }
    const absl::Time start = absl::Now();
    std::vector<absl::StatusOr<int64_t>> results = store_.AppendDeltas(runs);
    const absl::Time done = absl::Now();
    metrics_.ObserveOperation("append_deltas", done - start);
    metrics_.write_batch_size().Observe(batch_deltas);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (results[i].ok()) {
        metrics_.deltas().Increment(static_cast<double>(runs[i].texts.size()));
      }
      metrics_.durable_lag().Observe(absl::ToDoubleSeconds(done - batch[i].received));
      batch[i].sink->OnCommitted(static_cast<int>(runs[i].texts.size()), std::move(results[i]));
    }
  }
}

}  // namespace parley::persistence
