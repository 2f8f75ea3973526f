#pragma once

namespace parley::common {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts
// afterwards, so that only WaitForShutdownSignal() receives them. Call first in main().
void BlockShutdownSignals();

// Waits until SIGINT or SIGTERM arrives; returns the signal number.
int WaitForShutdownSignal();

}  // namespace parley::common
