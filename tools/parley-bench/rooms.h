#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "tools/parley-bench/workloads.h"

namespace parley::bench {

struct RoomsOptions {
  // The edge the typing client of each room connects to, and the edge its viewer connects to.
  std::string sender_host = "127.0.0.1";
  uint16_t sender_port = 0;
  std::string viewer_host = "127.0.0.1";
  uint16_t viewer_port = 0;
  // gRPC target of parley-persistence, where each room's conversation is created.
  std::string persistence;
  // Rooms active at once, one step after the other.
  std::vector<int64_t> steps = {100, 1000};
  // How long typing is measured at each step, and how often each room's client types.
  absl::Duration duration = absl::Seconds(20);
  absl::Duration interval = absl::Seconds(2);
  int threads = 2;
  // The PostgreSQL server (postmaster) whose process tree's CPU and backends are reported.
  pid_t postgres_pid = 0;
  WatchedPids pids;
};

// Rooms across edges: at each step, N users each with one conversation, a client typing in it on
// one edge and a viewer of it on another. Reports the delay from a typing frame's send to its
// delivery to the viewer (p50/p99), typing frames lost, and the load on PostgreSQL and the
// watched processes per 1,000 active rooms.
boost::json::object RunRooms(const RoomsOptions& options);

}  // namespace parley::bench
