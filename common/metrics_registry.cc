#include "common/metrics_registry.h"

#include <algorithm>

namespace parley::common {

MetricsRegistry::~MetricsRegistry() = default;

std::vector<prometheus::MetricFamily> MetricsRegistry::Collect() const {
  {
    absl::MutexLock lock(&mutex_);
    for (Histogram* histogram : histograms_) {
      histogram->Fold();
    }
  }
  return prometheus::Registry::Collect();
}

void MetricsRegistry::Attach(Histogram* histogram) {
  absl::MutexLock lock(&mutex_);
  histograms_.insert(histogram);
}

void MetricsRegistry::Detach(Histogram* histogram) {
  absl::MutexLock lock(&mutex_);
  histograms_.erase(histogram);
  // What it observed since the last scrape stays in its series, which outlives it.
  histogram->Fold();
}

Histogram::Histogram(prometheus::Registry& registry, prometheus::Histogram& exposed,
                     const prometheus::Histogram::BucketBoundaries& bounds)
    : registry_(dynamic_cast<MetricsRegistry*>(&registry)),
      exposed_(exposed),
      bounds_(bounds),
      counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    counts_[i].store(0, std::memory_order_relaxed);
  }
  if (registry_ != nullptr) {
    registry_->Attach(this);
  }
}

Histogram::~Histogram() {
  if (registry_ != nullptr) {
    registry_->Detach(this);
  }
}

void Histogram::Observe(double value) {
  if (registry_ == nullptr) {
    exposed_.Observe(value);
    return;
  }
  // Prometheus buckets are "less than or equal": the first bound not below the value.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

void Histogram::Fold() {
  std::vector<double> increments(bounds_.size() + 1);
  bool any = false;
  for (size_t i = 0; i < increments.size(); ++i) {
    const uint64_t count = counts_[i].exchange(0, std::memory_order_relaxed);
    increments[i] = static_cast<double>(count);
    any = any || count != 0;
  }
  const double sum = sum_.exchange(0, std::memory_order_relaxed);
  // An observation racing this fold can leave its count for the next fold and its value in
  // this one's sum: the sum is folded even when no count is, or that value would be lost.
  if (any || sum != 0) {
    exposed_.ObserveMultiple(increments, sum);
  }
}

}  // namespace parley::common
