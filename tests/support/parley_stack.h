#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/child_process.h"

namespace parley::testing {

// Extra flags for the processes a ParleyStack starts.
struct StackOptions {
  // Appended to the simulated engine's defaults (e.g. "--sim_tokens_per_second=20").
  std::vector<std::string> inference_flags;
  // Appended to the edge's defaults (anonymous users allowed, its own ports).
  std::vector<std::string> edge_flags;
  // Appended to persistence's defaults (a fresh SQLite file, its own ports).
  std::vector<std::string> persistence_flags;
};

// Persistence on a fresh SQLite file, inference on the simulated engine and one edge: the
// three real binaries on loopback ports, stopped (SIGKILL) when the stack is destroyed.
class ParleyStack {
 public:
  // Null (with a test failure recorded) if a process did not come up.
  static std::unique_ptr<ParleyStack> Start(StackOptions options = {});

  // Another edge on the same backends, e.g. to resume on a second instance.
  std::unique_ptr<ChildProcess> StartEdge(const std::vector<std::string>& extra_flags = {}) const;

  ChildProcess& edge() { return *edge_; }
  ChildProcess& inference() { return *inference_; }
  ChildProcess& persistence() { return *persistence_; }
  // "127.0.0.1:PORT" of each process's main listener.
  const std::string& edge_address() const { return edge_address_; }
  const std::string& inference_address() const { return inference_address_; }
  const std::string& persistence_address() const { return persistence_address_; }
  // The SQLite database persistence stores into.
  std::string database_path() const { return data_dir_ + "/parley.db"; }
  // How many calls of `method` (e.g. "AppendMessage") persistence has seen start, from its
  // /metrics; -1 if they cannot be read.
  int PersistenceCallsStarted(const std::string& method);

 private:
  ParleyStack() = default;

  std::string data_dir_;
  std::unique_ptr<ChildProcess> persistence_;
  std::unique_ptr<ChildProcess> inference_;
  std::unique_ptr<ChildProcess> edge_;
  std::string persistence_address_;
  std::string inference_address_;
  std::string edge_address_;
};

}  // namespace parley::testing
