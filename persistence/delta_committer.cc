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

DeltaCommitter::Pending& DeltaCommitter::PendingFor(DeltaSink* sink, const std::string& message_id,
                                                    int64_t first_seq) {
  const absl::Time now = absl::Now();
  if (pending_.empty()) {
    oldest_ = now;
  }
  auto [it, inserted] = index_.try_emplace(sink, pending_.size());
  if (inserted) {
    pending_.push_back(Pending{sink, DeltaRun{message_id, first_seq, {}}, now, std::nullopt});
  }
  return pending_[it->second];
}

void DeltaCommitter::Submit(DeltaSink* sink, const std::string& message_id, int64_t first_seq,
                            std::vector<std::string> texts) {
  if (texts.empty()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  Pending& pending = PendingFor(sink, message_id, first_seq);
  if (pending.run.texts.empty()) {
    pending.run.first_seq = first_seq;  // An entry made by nothing but a finish has no deltas.
  }
  pending_deltas_ += static_cast<int>(texts.size());
  for (std::string& text : texts) {
    pending_bytes_ += text.size();
    pending.run.texts.push_back(std::move(text));
  }
}

void DeltaCommitter::SubmitFinish(DeltaSink* sink, const std::string& message_id, int64_t last_seq,
                                  v1::StreamFinish finish) {
  absl::MutexLock lock(&mu_);
  PendingFor(sink, message_id, last_seq + 1).finish =
      FinishRun{message_id, last_seq, std::move(finish)};
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
    // Each entry's deltas (when it has any) and finish (when it has one), by index.
    constexpr size_t kNone = ~size_t{0};
    std::vector<DeltaRun> runs;
    std::vector<FinishRun> finishes;
    std::vector<size_t> run_of(batch.size(), kNone);
    std::vector<size_t> finish_of(batch.size(), kNone);
    runs.reserve(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].run.texts.empty()) {
        run_of[i] = runs.size();
        runs.push_back(std::move(batch[i].run));
      }
      if (batch[i].finish.has_value()) {
        finish_of[i] = finishes.size();
        finishes.push_back(*std::move(batch[i].finish));
      }
    }
    const absl::Time start = absl::Now();
    BatchResult results = store_.CommitBatch(runs, finishes);
    const absl::Time done = absl::Now();
    metrics_.ObserveOperation("append_deltas", done - start);
    metrics_.write_batch_size().Observe(batch_deltas);
    for (size_t i = 0; i < batch.size(); ++i) {
      int deltas = 0;
      absl::StatusOr<int64_t> durable_seq = int64_t{0};
      if (run_of[i] != kNone) {
        deltas = static_cast<int>(runs[run_of[i]].texts.size());
        durable_seq = std::move(results.runs[run_of[i]]);
        if (durable_seq.ok()) {
          metrics_.deltas().Increment(deltas);
        }
        metrics_.durable_lag().Observe(absl::ToDoubleSeconds(done - batch[i].received));
      }
      std::optional<absl::StatusOr<v1::Message>> finished;
      if (finish_of[i] != kNone) {
        finished = std::move(results.finishes[finish_of[i]]);
      }
      batch[i].sink->OnCommitted(deltas, std::move(durable_seq), std::move(finished));
    }
  }
}

}  // namespace parley::persistence
