#pragma once

#include <string>
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "persistence/store.h"

namespace parley::persistence {

// Keeps the leases of the replies this replica's write streams are writing,
// and ends the replies whose lease lapsed anywhere (their writer died, or the
// replica it wrote through did). One thread: every quarter lease it renews
// every held lease in one statement and sweeps lapsed ones in another, so the
// cost is per replica, not per stream.
class StreamLeases {
 public:
  // `lease` of zero or less disables leases (nothing is renewed or swept).
  StreamLeases(Store& store, absl::Duration lease);
  ~StreamLeases();

  // A write stream holds `message_id` from open to its end; several may.
  void Hold(const std::string& message_id);
  void Release(const std::string& message_id);

 private:
  void Run();

  Store& store_;
  const absl::Duration lease_;
  absl::Mutex mu_;
  std::unordered_map<std::string, int> held_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace parley::persistence
