#include "edge/limits/token_bucket.h"

#include <algorithm>

namespace parley::edge {

TokenBucket::TokenBucket(int per_minute, int burst, absl::Time now)
    : interval_(per_minute > 0 ? absl::Minutes(1) / per_minute : absl::ZeroDuration()),
      tolerance_(interval_ * ((burst > 0 ? burst : std::max(per_minute, 1)) - 1)),
      full_at_(now) {}

RateDecision TokenBucket::TryAcquire(absl::Time now) {
  if (unlimited()) {
    return {};
  }
  absl::Time start = std::max(full_at_, now);
  // Taking a token pushes "full again" one interval later; refuse if that would mean more than
  // `burst` tokens owed.
  absl::Time earliest = start - tolerance_;
  if (now < earliest) {
    return {.allowed = false, .retry_after = earliest - now};
  }
  full_at_ = start + interval_;
  return {};
}

bool TokenBucket::IsFull(absl::Time now) const { return full_at_ <= now; }

}  // namespace parley::edge
