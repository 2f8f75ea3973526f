#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace parley::edge {

// What a rate limiter says about one message.
struct RateDecision {
  bool allowed = true;
  // When refused: how long until one message would be allowed (for `retryAfterMs`).
  absl::Duration retry_after = absl::ZeroDuration();

  // `retry_after` rounded up to whole milliseconds, so a client told to wait that long is
  // never refused again for waiting too little.
  int64_t RetryAfterMillis() const {
    return absl::ToInt64Milliseconds(absl::Ceil(retry_after, absl::Milliseconds(1)));
  }
};

// A token bucket for "N messages per minute, with bursts of up to B", kept as a single
// timestamp (the generic cell rate algorithm): exact with integer durations, no drift, and
// 16 bytes per bucket. The caller passes the current time, so tests drive it with a fake clock.
// Not thread-safe: a connection's bucket lives on that connection's strand; shared buckets are
// guarded by their owner (UserLimits).
class TokenBucket {
 public:
  // `per_minute` <= 0 disables the limit (every message allowed). `burst` is the bucket size:
  // how many messages may arrive back to back after a quiet spell; <= 0 means `per_minute`.
  TokenBucket(int per_minute, int burst, absl::Time now);

  // Takes one token if there is one.
  RateDecision TryAcquire(absl::Time now);

  // True when the bucket is full at `now`, i.e. indistinguishable from a fresh one; an owner
  // may then drop it without changing any future decision.
  bool IsFull(absl::Time now) const;

  bool unlimited() const { return interval_ == absl::ZeroDuration(); }

 private:
  absl::Duration interval_;   // time to earn one token
  absl::Duration tolerance_;  // (burst - 1) * interval_
  // The time at which the bucket would be full again ("theoretical arrival time").
  absl::Time full_at_;
};

}  // namespace parley::edge
