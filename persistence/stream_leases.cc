#include "persistence/stream_leases.h"

#include <vector>

#include "absl/time/clock.h"
#include "common/log.h"

namespace parley::persistence {

StreamLeases::StreamLeases(Store& store, absl::Duration lease) : store_(store), lease_(lease) {
  store_.SetStreamLease(lease_ > absl::ZeroDuration() ? lease_ : absl::ZeroDuration());
  if (lease_ > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Run(); });
  }
}

StreamLeases::~StreamLeases() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void StreamLeases::Hold(const std::string& message_id) {
  absl::MutexLock lock(&mu_);
  ++held_[message_id];
}

void StreamLeases::Release(const std::string& message_id) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(message_id);
  if (it != held_.end() && --it->second == 0) {
    held_.erase(it);
  }
}

void StreamLeases::Run() {
  const absl::Duration period = lease_ / 4;
  while (true) {
    std::vector<std::string> held;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) {
        return;
      }
      held.reserve(held_.size());
      for (const auto& [id, count] : held_) {
        held.push_back(id);
      }
    }
    const absl::Time now = absl::Now();
    if (absl::Status status = store_.RenewLeases(held, now + lease_); !status.ok()) {
      common::LogWarning("cannot renew stream leases", {{"error", std::string(status.message())}});
    }
    absl::StatusOr<int> expired = store_.ExpireLeases(now);
    if (!expired.ok()) {
      common::LogWarning("cannot end abandoned replies",
                         {{"error", std::string(expired.status().message())}});
    } else if (*expired > 0) {
      common::LogInfo("ended abandoned replies", {{"count", std::to_string(*expired)}});
    }
  }
}

}  // namespace parley::persistence
