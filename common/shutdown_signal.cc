#include "common/shutdown_signal.h"

#include <pthread.h>
#include <signal.h>

namespace parley::common {
namespace {

sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

}  // namespace

void BlockShutdownSignals() {
  const sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A peer closing a socket must be an error code, not a process-wide SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
}

int WaitForShutdownSignal() {
  const sigset_t signals = ShutdownSignals();
  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  return received;
}

}  // namespace parley::common
