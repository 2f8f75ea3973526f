#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace parley::testing {

// A real binary started by a test, with its stdout collected line by line.
// Killed with SIGKILL on destruction if it is still running, so a failing
// test never leaves servers behind.
class ChildProcess {
 public:
  // `binary_name` is looked up in the build's bin directory (see BinaryPath).
  // Returns nullptr if the process cannot be started.
  static std::unique_ptr<ChildProcess> Start(
      const std::string& binary_name, std::vector<std::string> args,
      std::vector<std::pair<std::string, std::string>> env = {});

  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits for a stdout line containing `needle`; returns it, or "" on timeout or exit.
  std::string WaitForLine(std::string_view needle, absl::Duration timeout = absl::Seconds(30));

  // Returns the address in `field` of the JSON "listening" line services print first,
  // e.g. "127.0.0.1:41234"; "" if it never came.
  std::string WaitForListening(std::string_view field = "listen");

  void Signal(int signal);
  // SIGSTOP, then returns once every thread is stopped: the signal alone returns while the
  // process may still be serving what it has in hand for a moment. False if it did not stop
  // within `timeout`.
  bool Stop(absl::Duration timeout = absl::Seconds(10));

  // Waits for exit and for the rest of its output; returns the exit code, or 128 + signal
  // number if killed.
  int Wait();

  std::vector<std::string> Lines();
  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int stdout_fd);
  void ReadOutput();

  const pid_t pid_;
  const int stdout_fd_;
  absl::Mutex mutex_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mutex_);
  bool output_closed_ ABSL_GUARDED_BY(mutex_) = false;
  bool reaped_ = false;
  int exit_code_ = 0;
  // Last: its thread starts in the constructor and uses every member above, which must be
  // constructed by then.
  std::thread reader_;
};

// Absolute path of a binary built by this tree.
std::string BinaryPath(const std::string& name);

// A new empty directory under $TMPDIR (or /tmp).
std::string MakeTempDir();

// "127.0.0.1:PORT" for a server a test stops and starts again on the same address. PORT is free
// now and outside the kernel's ephemeral range (net.ipv4.ip_local_port_range), so while the server
// is down no outgoing connection, of this test or any other, can be given it as its own port.
std::string RestartableListenAddress();

}  // namespace parley::testing
