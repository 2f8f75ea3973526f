#include "tools/parley-bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace parley::bench {
namespace {

double NearestRank(const std::vector<double>& sorted, double percentile) {
  const double rank = std::ceil(percentile / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

}  // namespace

Distribution Summarize(std::vector<double>& samples) {
  Distribution d;
  if (samples.empty()) {
    return d;
  }
  std::sort(samples.begin(), samples.end());
  d.count = samples.size();
  d.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(d.count);
  d.min = samples.front();
  d.p50 = NearestRank(samples, 50);
  d.p90 = NearestRank(samples, 90);
  d.p95 = NearestRank(samples, 95);
  d.p99 = NearestRank(samples, 99);
  d.p999 = NearestRank(samples, 99.9);
  d.max = samples.back();
  return d;
}

boost::json::object ToJson(const Distribution& d) {
  return boost::json::object{{"count", d.count}, {"mean", d.mean}, {"min", d.min},
                             {"p50", d.p50},     {"p90", d.p90},   {"p95", d.p95},
                             {"p99", d.p99},     {"p999", d.p999}, {"max", d.max}};
}

}  // namespace parley::bench
