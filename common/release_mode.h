#pragma once

namespace parley::common {

// Turns off Abseil's mutex deadlock detection, which Debian's Abseil build leaves on: it looks
// up a lock graph on every Lock() and Unlock() of every absl::Mutex (gRPC's included). The
// services' main() calls this first; the tests, which link the libraries but not the mains, keep
// the detection and so still catch lock-order inversions.
void DisableMutexDeadlockDetection();

}  // namespace parley::common
