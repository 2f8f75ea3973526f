#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "boost/json/value.hpp"

namespace parley::bench {

// Percentiles of one latency sample, in milliseconds. Percentiles use the
// nearest-rank method so that p99 of 100 samples is the 99th smallest one.
struct Distribution {
  uint64_t count = 0;
  double mean = 0;
  double min = 0;
  double p50 = 0;
  double p90 = 0;
  double p95 = 0;
  double p99 = 0;
  double p999 = 0;
  double max = 0;
};

// Sorts `samples` in place and summarises them; an empty sample gives zeros.
Distribution Summarize(std::vector<double>& samples);

boost::json::object ToJson(const Distribution& d);

}  // namespace parley::bench
