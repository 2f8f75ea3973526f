#pragma once

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace parley::bench {

// What the kernel says about one process: the figures the benchmarks report
// for the servers under test (CPU time spent, resident memory).
struct ProcSample {
  double cpu_seconds = 0;  // user + system time since the process started
  int64_t rss_kib = 0;     // VmRSS
  int64_t threads = 0;
  int64_t open_files = 0;  // entries in /proc/<pid>/fd, -1 if unreadable
};

absl::StatusOr<ProcSample> ReadProc(pid_t pid);

}  // namespace parley::bench
