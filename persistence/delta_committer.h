#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "persistence/metrics.h"
#include "persistence/store.h"

namespace parley::persistence {

// Receives the outcome of deltas handed to a DeltaCommitter.
class DeltaSink {
 public:
  virtual ~DeltaSink() = default;
  // `deltas` of this sink's submissions were committed (or failed) together;
  // `durable_seq` is the message's highest durable seq afterwards (when `deltas`
  // is above 0). `finished` is set when the commit carried the sink's finish:
  // the ended message, or why it did not end. Runs on the committer's thread:
  // must not block.
  virtual void OnCommitted(int deltas, absl::StatusOr<int64_t> durable_seq,
                           std::optional<absl::StatusOr<v1::Message>> finished) = 0;
};

// Group commit for every open stream: deltas from all streams wait at most
// `max_delay` (or until the batch is full) and are written in one transaction,
// so one fsync makes hundreds of deltas durable, and ends the replies whose
// finish arrived meanwhile. One thread commits batches in order, so a message's
// deltas never overtake each other, nor its finish them.
class DeltaCommitter {
 public:
  struct Options {
    absl::Duration max_delay = absl::Milliseconds(2);
    int max_batch_deltas = 4096;
    size_t max_batch_bytes = 4 << 20;
  };

  DeltaCommitter(Store& store, PersistenceMetrics& metrics, Options options);
  // Commits what is queued, then stops.
  ~DeltaCommitter();

  // `texts[i]` is seq `first_seq + i`; `first_seq` must follow the sink's
  // previous submission. The sink must outlive its OnCommitted call.
  void Submit(DeltaSink* sink, const std::string& message_id, int64_t first_seq,
              std::vector<std::string> texts);
  // Ends the message after the sink's deltas submitted so far, which must bring it to
  // `last_seq`; the sink submits nothing after it.
  void SubmitFinish(DeltaSink* sink, const std::string& message_id, int64_t last_seq,
                    v1::StreamFinish finish);

 private:
  struct Pending {
    DeltaSink* sink;
    DeltaRun run;
    absl::Time received;
    std::optional<FinishRun> finish;
  };
  // The sink's entry in `pending_`, added if it has none.
  Pending& PendingFor(DeltaSink* sink, const std::string& message_id, int64_t first_seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void Run();
  bool BatchReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store& store_;
  PersistenceMetrics& metrics_;
  const Options options_;

  absl::Mutex mu_;
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<DeltaSink*, size_t> index_ ABSL_GUARDED_BY(mu_);
  int pending_deltas_ ABSL_GUARDED_BY(mu_) = 0;
  size_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time oldest_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace parley::persistence
