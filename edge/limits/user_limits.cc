#include "edge/limits/user_limits.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace parley::edge {
namespace {

struct Entry {
  explicit Entry(const UserLimitsOptions& options, absl::Time now)
      : messages(options.messages_per_minute, options.message_burst, now) {}
  TokenBucket messages;
  int active_turns = 0;
};

}  // namespace

// Shared by UserLimits and every TurnSlot it handed out, so a slot outliving the registry is
// still safe to release.
struct TurnSlot::State {
  explicit State(UserLimitsOptions opts) : options(std::move(opts)) {}

  const UserLimitsOptions options;
  mutable absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
  absl::Time next_sweep ABSL_GUARDED_BY(mu) = absl::InfinitePast();

  void SweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    absl::erase_if(entries, [now](const auto& item) {
      return item.second.active_turns == 0 && item.second.messages.IsFull(now);
    });
    next_sweep = now + options.sweep_interval;
  }

  void MaybeSweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (now >= next_sweep) {
      SweepLocked(now);
    }
  }

  Entry& EntryLocked(std::string_view user_id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = entries.find(absl::string_view(user_id.data(), user_id.size()));
    if (it == entries.end()) {
      it = entries.try_emplace(std::string(user_id), options, now).first;
    }
    return it->second;
  }
};

TurnSlot::TurnSlot(std::shared_ptr<State> state, std::string user_id)
    : state_(std::move(state)), user_id_(std::move(user_id)) {}

TurnSlot::TurnSlot(TurnSlot&& other) noexcept
    : state_(std::move(other.state_)), user_id_(std::move(other.user_id_)) {
  other.state_ = nullptr;
}

TurnSlot& TurnSlot::operator=(TurnSlot&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
    user_id_ = std::move(other.user_id_);
    other.state_ = nullptr;
  }
  return *this;
}

TurnSlot::~TurnSlot() { Release(); }

void TurnSlot::Release() {
  if (state_ == nullptr) {
    return;
  }
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->entries.find(user_id_);
    // The entry cannot have been swept while this slot counted in it.
    if (it != state_->entries.end() && it->second.active_turns > 0) {
      --it->second.active_turns;
    }
  }
  state_ = nullptr;
}

UserLimits::UserLimits(UserLimitsOptions options) {
  if (!options.clock) {
    options.clock = [] { return absl::Now(); };
  }
  state_ = std::make_shared<TurnSlot::State>(std::move(options));
}

RateDecision UserLimits::AcquireMessage(std::string_view user_id) {
  if (state_->options.messages_per_minute <= 0) {
    return {};
  }
  absl::Time now = state_->options.clock();
  absl::MutexLock lock(&state_->mu);
  state_->MaybeSweepLocked(now);
  return state_->EntryLocked(user_id, now).messages.TryAcquire(now);
}

absl::StatusOr<TurnSlot> UserLimits::AcquireTurn(std::string_view user_id) {
  absl::Time now = state_->options.clock();
  absl::MutexLock lock(&state_->mu);
  state_->MaybeSweepLocked(now);
  Entry& entry = state_->EntryLocked(user_id, now);
  int max = state_->options.max_concurrent_turns;
  if (max > 0 && entry.active_turns >= max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("at most ", max, " turns may run at once per user"));
  }
  ++entry.active_turns;
  return TurnSlot(state_, std::string(user_id));
}

int UserLimits::ActiveTurns(std::string_view user_id) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->entries.find(absl::string_view(user_id.data(), user_id.size()));
  return it == state_->entries.end() ? 0 : it->second.active_turns;
}

size_t UserLimits::TrackedUsers() const {
  absl::MutexLock lock(&state_->mu);
  return state_->entries.size();
}

void UserLimits::Sweep() {
  absl::Time now = state_->options.clock();
  absl::MutexLock lock(&state_->mu);
  state_->SweepLocked(now);
}

}  // namespace parley::edge
