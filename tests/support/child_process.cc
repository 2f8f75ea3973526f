#include "tests/support/child_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"

namespace parley::testing {

std::unique_ptr<ChildProcess> ChildProcess::Start(
    const std::string& binary_name, std::vector<std::string> args,
    std::vector<std::pair<std::string, std::string>> env) {
  const std::string path = BinaryPath(binary_name);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return nullptr;
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return nullptr;
  }
  if (pid == 0) {
    // A test that crashes must not leave servers behind holding CTest's output open.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(pipe_fds[1], STDOUT_FILENO);
    for (const auto& [name, value] : env) {
      setenv(name.c_str(), value.c_str(), 1);
    }
    // The test runner may block these; the child must see them as usual.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, pipe_fds[0]));
}

ChildProcess::ChildProcess(pid_t pid, int stdout_fd)
    : pid_(pid), stdout_fd_(stdout_fd), reader_([this] { ReadOutput(); }) {}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    Wait();
  }
  reader_.join();
  close(stdout_fd_);
}

void ChildProcess::ReadOutput() {
  std::string pending;
  char buffer[4096];
  while (true) {
    const ssize_t n = read(stdout_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    pending.append(buffer, static_cast<size_t>(n));
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      absl::MutexLock lock(&mutex_);
      lines_.push_back(pending.substr(0, newline));
      pending.erase(0, newline + 1);
    }
  }
  absl::MutexLock lock(&mutex_);
  if (!pending.empty()) {
    lines_.push_back(pending);
  }
  output_closed_ = true;
}

std::string ChildProcess::WaitForLine(std::string_view needle, absl::Duration timeout) {
  size_t checked = 0;
  std::string found;
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    for (; checked < lines_.size(); ++checked) {
      if (lines_[checked].find(needle) != std::string::npos) {
        found = lines_[checked];
        return true;
      }
    }
    return output_closed_;
  };
  absl::MutexLock lock(&mutex_);
  mutex_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return found;
}

std::string ChildProcess::WaitForListening(std::string_view field) {
  const std::string line = WaitForLine("\"msg\":\"listening\"");
  if (line.empty()) {
    return "";
  }
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(line, error);
  if (error || !parsed.is_object()) {
    return "";
  }
  const boost::json::value* address = parsed.as_object().if_contains(field);
  if (address == nullptr || !address->is_string()) {
    return "";
  }
  return std::string(address->as_string());
}

void ChildProcess::Signal(int signal) {
  if (!reaped_) {
    kill(pid_, signal);
  }
}

bool ChildProcess::Stop(absl::Duration timeout) {
  Signal(SIGSTOP);
  const std::filesystem::path tasks = absl::StrCat("/proc/", pid_, "/task");
  for (const absl::Time give_up = absl::Now() + timeout;;) {
    bool stopped = true;
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      // "TID (COMMAND) STATE ...": the state follows the command's closing parenthesis.
      const size_t close = line.rfind(')');
      stopped = stopped && close != std::string::npos && close + 2 < line.size() &&
                (line[close + 2] == 'T' || line[close + 2] == 't');
    }
    if (stopped && !error) {
      return true;
    }
    if (absl::Now() >= give_up) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

int ChildProcess::Wait() {
  if (reaped_) {
    return exit_code_;
  }
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // What the process printed last may still be in the pipe: callers read Lines() next. Bounded,
  // since something the process started could hold its stdout open after it exits.
  auto output_read = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return output_closed_; };
  absl::MutexLock lock(&mutex_);
  mutex_.AwaitWithTimeout(absl::Condition(&output_read), absl::Seconds(10));
  return exit_code_;
}

std::vector<std::string> ChildProcess::Lines() {
  absl::MutexLock lock(&mutex_);
  return lines_;
}

std::string BinaryPath(const std::string& name) {
  if (const char* dir = std::getenv("PARLEY_BIN_DIR")) {
    return std::string(dir) + "/" + name;
  }
  return std::string(PARLEY_BIN_DIR) + "/" + name;
}

std::string MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/parley-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::abort();
  }
  return pattern;
}

std::string RestartableListenAddress() {
  int ephemeral_first = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_first;
  // Below the ephemeral range and above the well-known ports; random, so parallel tests rarely
  // try the same one, and bound once to check that it is free.
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> port_of(10000, std::max(10001, ephemeral_first - 1));
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = port_of(random);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      break;
    }
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    if (free) {
      return "127.0.0.1:" + std::to_string(port);
    }
  }
  std::abort();
}

}  // namespace parley::testing
