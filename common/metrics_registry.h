#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace parley::common {

class Histogram;

// A prometheus registry whose common::Histograms observe without a lock. prometheus-cpp's
// Histogram takes a mutex on every Observe, shared by every thread that observes it (every turn
// of the process, for a latency histogram); a common::Histogram counts into atomics instead, and
// this registry folds those counts into the prometheus histograms each time it is collected, so a
// scrape sees every observation made before it.
class MetricsRegistry : public prometheus::Registry {
 public:
  MetricsRegistry() = default;
  ~MetricsRegistry() override;

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  friend class Histogram;
  void Attach(Histogram* histogram);
  // Folds what `histogram` observed since the last Collect first.
  void Detach(Histogram* histogram);

  mutable absl::Mutex mutex_;
  absl::flat_hash_set<Histogram*> histograms_ ABSL_GUARDED_BY(mutex_);
};

// One histogram series. Observe is lock-free when the registry is a MetricsRegistry (the
// services' registries are); with a plain prometheus::Registry it observes `exposed` directly.
class Histogram {
 public:
  // `exposed` is the child of a family registered in `registry`, made with `bounds`.
  Histogram(prometheus::Registry& registry, prometheus::Histogram& exposed,
            const prometheus::Histogram::BucketBoundaries& bounds);
  ~Histogram();
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value);

 private:
  friend class MetricsRegistry;
  // Moves what was observed since the last fold into `exposed_`. Under the registry's lock.
  void Fold();

  MetricsRegistry* const registry_;
  prometheus::Histogram& exposed_;
  const prometheus::Histogram::BucketBoundaries bounds_;
  // One per bound, then the +Inf bucket.
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Finds a metric by a string key (the label values that vary at one call site: a frame type, an
// operation, a model) without a lock once the key has been seen, so a hot path does not take
// the family's mutex (and build its label map) on every call. Entries are never removed: meant
// for the handful of values a call site sees; keys past the first kCapacity are found under a
// lock.
template <typename Metric>
class MetricCache {
 public:
  static constexpr size_t kCapacity = 64;

  // `make` (called under this cache's lock, once per key) creates or finds the metric of `key`.
  template <typename Make>
  Metric& Get(absl::string_view key, Make&& make) {
    const size_t start = absl::Hash<absl::string_view>{}(key) % kCapacity;
    for (size_t probe = 0; probe < kCapacity; ++probe) {
      const Entry* entry = slots_[(start + probe) % kCapacity].load(std::memory_order_acquire);
      if (entry == nullptr) {
        break;
      }
      if (entry->key == key) {
        return *entry->metric;
      }
    }
    absl::MutexLock lock(&mutex_);
    for (size_t probe = 0; probe < kCapacity; ++probe) {
      std::atomic<const Entry*>& slot = slots_[(start + probe) % kCapacity];
      const Entry* entry = slot.load(std::memory_order_relaxed);
      if (entry == nullptr) {
        entries_.push_back(std::make_unique<Entry>(Entry{std::string(key), &make()}));
        slot.store(entries_.back().get(), std::memory_order_release);
        return *entries_.back()->metric;
      }
      if (entry->key == key) {
        return *entry->metric;
      }
    }
    auto [it, added] = overflow_.try_emplace(std::string(key), nullptr);
    if (added) {
      it->second = &make();
    }
    return *it->second;
  }

 private:
  struct Entry {
    std::string key;
    Metric* metric;
  };
  std::array<std::atomic<const Entry*>, kCapacity> slots_{};
  absl::Mutex mutex_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, Metric*> overflow_ ABSL_GUARDED_BY(mutex_);
};

// The histograms of one family by the label values that vary at one call site (see
// MetricCache), made on first use with `bounds`.
class HistogramsByKey {
 public:
  HistogramsByKey(prometheus::Registry& registry, prometheus::Family<prometheus::Histogram>& family,
                  prometheus::Histogram::BucketBoundaries bounds)
      : registry_(registry), family_(family), bounds_(std::move(bounds)) {}

  // `labels` (called once per key) gives the series' labels.
  template <typename Labels>
  Histogram& Get(absl::string_view key, Labels&& labels) {
    return cache_.Get(key, [&]() -> Histogram& {
      absl::MutexLock lock(&mutex_);
      owned_.push_back(
          std::make_unique<Histogram>(registry_, family_.Add(labels(), bounds_), bounds_));
      return *owned_.back();
    });
  }

 private:
  prometheus::Registry& registry_;
  prometheus::Family<prometheus::Histogram>& family_;
  const prometheus::Histogram::BucketBoundaries bounds_;
  MetricCache<Histogram> cache_;
  absl::Mutex mutex_;
  std::vector<std::unique_ptr<Histogram>> owned_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::common
