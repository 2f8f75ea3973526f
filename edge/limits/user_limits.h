#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "edge/limits/token_bucket.h"

namespace parley::edge {

struct UserLimitsOptions {
  // Messages per minute per user over all the user's connections; <= 0 disables.
  int messages_per_minute = 60;
  // Back-to-back allowance; <= 0 means `messages_per_minute`.
  int message_burst = 0;
  // Turns (generations) running at once per user, over all of the user's connections to this
  // edge process (each edge instance counts on its own); <= 0 disables.
  int max_concurrent_turns = 2;
  // How often calls sweep out idle entries (a full pass over the map, under the lock).
  absl::Duration sweep_interval = absl::Minutes(1);
  // Current time; absl::Now when unset. Tests inject a fake.
  std::function<absl::Time()> clock;
};

class UserLimits;

// One running turn counted against a user. Releases its slot when destroyed (or on Release()),
// from any thread, even after the UserLimits that issued it is gone. Move-only.
class TurnSlot {
 public:
  TurnSlot() = default;
  TurnSlot(TurnSlot&& other) noexcept;
  TurnSlot& operator=(TurnSlot&& other) noexcept;
  TurnSlot(const TurnSlot&) = delete;
  TurnSlot& operator=(const TurnSlot&) = delete;
  ~TurnSlot();

  void Release();
  bool held() const { return state_ != nullptr; }

 private:
  friend class UserLimits;
  struct State;
  TurnSlot(std::shared_ptr<State> state, std::string user_id);

  std::shared_ptr<State> state_;
  std::string user_id_;
};

// Per-user limits shared by every connection of an edge process: a message-rate bucket and a
// concurrent-turns counter per user id. Thread-safe. An entry disappears once it holds no
// running turn and its bucket has refilled — it then carries no information, so forgetting it
// changes no decision — which keeps memory proportional to recently active users.
class UserLimits {
 public:
  explicit UserLimits(UserLimitsOptions options);

  // Counts one message from `user_id` against its per-minute budget.
  RateDecision AcquireMessage(std::string_view user_id);

  // A slot for one more running turn, or ResourceExhausted when the user is at the maximum.
  absl::StatusOr<TurnSlot> AcquireTurn(std::string_view user_id);

  // Running turns of `user_id` (0 for unknown users).
  int ActiveTurns(std::string_view user_id) const;

  // Number of users currently tracked (for tests and a gauge).
  size_t TrackedUsers() const;

  // Drops every idle entry now; calls do this by themselves every `sweep_interval`.
  void Sweep();

 private:
  std::shared_ptr<TurnSlot::State> state_;
};

}  // namespace parley::edge
