// Linked into every executable of a ThreadSanitizer build (scripts/test --sanitize=thread).
//
// Debian's Abseil is a shared library built without ThreadSanitizer, so TSan cannot see that an
// absl::Mutex, CondVar, Notification or BlockingCounter orders memory: every access guarded by
// one would be reported as a race (in Parley, and in gRPC, which locks absl::Mutex too). These
// definitions take the place of the library's (an executable's symbols come first), call the
// library's own through dlsym, and tell TSan the acquire and release each one performs. They are
// Abseil's own TSan annotations, which its build leaves out unless Abseil itself is instrumented.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

template <typename Function>
Function Real(const char* mangled_name) {
  void* symbol = dlsym(RTLD_NEXT, mangled_name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found in Abseil\n", mangled_name);
    std::abort();
  }
  return reinterpret_cast<Function>(symbol);
}

// The library's symbols, in the inline namespace of Debian 12's Abseil (absl::debian3).
#define PARLEY_REAL(type, name) static const auto real = Real<type>(name)

// A Condition is evaluated inside the library with the mutex held: by the waiting thread before
// LockWhen or Await returns (so before the acquire below it), or by the thread that unlocks, to
// see whom to wake. The condition reads what other threads wrote under the mutex, so each
// evaluation is bracketed by the acquire and release of holding it.
struct AcquiringCondition {
  const absl::Condition* condition;
  absl::Mutex* mu;
};

bool EvalAcquired(AcquiringCondition* annotated) {
  __tsan_acquire(annotated->mu);
  const bool met = annotated->condition->Eval();
  // If it is false the library lets go of the mutex to wait, unseen: what the evaluation read
  // comes before the next thread's acquire.
  __tsan_release(annotated->mu);
  return met;
}

#define PARLEY_ANNOTATED(cond, mu)                 \
  AcquiringCondition annotated_arg{&(cond), (mu)}; \
  const absl::Condition annotated(EvalAcquired, &annotated_arg)

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  PARLEY_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  PARLEY_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::TryLock() {
  PARLEY_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) {
    __tsan_acquire(this);
  }
  return locked;
}

void Mutex::ReaderLock() {
  PARLEY_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  PARLEY_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::ReaderTryLock() {
  PARLEY_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) {
    __tsan_acquire(this);
  }
  return locked;
}

void Mutex::LockWhen(const Condition& cond) {
  PARLEY_REAL(void (*)(Mutex*, const Condition&),
              "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  PARLEY_ANNOTATED(cond, this);
  real(this, annotated);
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  PARLEY_REAL(void (*)(Mutex*, const Condition&),
              "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  PARLEY_ANNOTATED(cond, this);
  real(this, annotated);
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  PARLEY_REAL(bool (*)(Mutex*, const Condition&, Duration),
              "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  PARLEY_ANNOTATED(cond, this);
  const bool met = real(this, annotated, timeout);
  __tsan_acquire(this);  // Held on return either way.
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  PARLEY_REAL(bool (*)(Mutex*, const Condition&, Time),
              "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  PARLEY_ANNOTATED(cond, this);
  const bool met = real(this, annotated, deadline);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  PARLEY_REAL(bool (*)(Mutex*, const Condition&, Duration),
              "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  PARLEY_ANNOTATED(cond, this);
  const bool met = real(this, annotated, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  PARLEY_REAL(bool (*)(Mutex*, const Condition&, Time),
              "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  PARLEY_ANNOTATED(cond, this);
  const bool met = real(this, annotated, deadline);
  __tsan_acquire(this);
  return met;
}

// Await releases the mutex while it waits and holds it again on return.
void Mutex::Await(const Condition& cond) {
  PARLEY_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  PARLEY_ANNOTATED(cond, this);
  real(this, annotated);
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  PARLEY_REAL(bool (*)(Mutex*, const Condition&, Duration),
              "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  __tsan_release(this);
  PARLEY_ANNOTATED(cond, this);
  const bool met = real(this, annotated, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  PARLEY_REAL(bool (*)(Mutex*, const Condition&, Time),
              "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_release(this);
  PARLEY_ANNOTATED(cond, this);
  const bool met = real(this, annotated, deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  PARLEY_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  PARLEY_REAL(bool (*)(CondVar*, Mutex*, Duration),
              "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  PARLEY_REAL(bool (*)(CondVar*, Mutex*, Time),
              "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

void Notification::Notify() {
  PARLEY_REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  // HasBeenNotified() is inline: an acquire load of the flag that follows the Notification's
  // mutex, which TSan sees. Releasing that address pairs with it.
  static_assert(sizeof(Notification) == 2 * sizeof(Mutex));
  __tsan_release(reinterpret_cast<char*>(this) + sizeof(Mutex));
  real(this);
}

void Notification::WaitForNotification() const {
  PARLEY_REAL(void (*)(const Notification*),
              "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  PARLEY_REAL(bool (*)(const Notification*, Duration),
              "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  PARLEY_REAL(bool (*)(const Notification*, Time),
              "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool BlockingCounter::DecrementCount() {
  PARLEY_REAL(bool (*)(BlockingCounter*), "_ZN4absl7debian315BlockingCounter14DecrementCountEv");
  __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  PARLEY_REAL(void (*)(BlockingCounter*), "_ZN4absl7debian315BlockingCounter4WaitEv");
  real(this);
  __tsan_acquire(this);
}

ABSL_NAMESPACE_END
}  // namespace absl
