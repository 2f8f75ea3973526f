#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/metrics_registry.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace parley::persistence {

// The service's Prometheus metrics (`parley_persistence_*`), registered once. Lock-free on the
// per-delta and per-call paths (see common::MetricsRegistry).
class PersistenceMetrics {
 public:
  PersistenceMetrics(prometheus::Registry& registry, absl::string_view store_kind);

  // Latency of one store call, by operation ("append_message", …).
  void ObserveOperation(absl::string_view operation, absl::Duration duration);
  // A call refused with RESOURCE_EXHAUSTED because the store queue was full.
  void Overloaded(absl::string_view operation);

  common::Histogram& write_batch_size() { return write_batch_size_; }
  // Write transactions committed together (SQLite's group commit).
  common::Histogram& transactions_per_commit() { return transactions_per_commit_; }
  common::Histogram& durable_lag() { return durable_lag_; }
  prometheus::Gauge& watchers() { return watchers_; }
  prometheus::Counter& deltas() { return deltas_; }
  prometheus::Gauge& streams_active() { return streams_active_; }
  // A typing signal dropped because it was too old: refused when published (`publish`), or not
  // delivered to a watcher (`delivery`).
  prometheus::Counter& signals_dropped_at_publish() { return signals_dropped_at_publish_; }
  prometheus::Counter& signals_dropped_at_delivery() { return signals_dropped_at_delivery_; }

 private:
  std::string store_kind_;
  prometheus::Family<prometheus::Histogram>& operation_duration_;
  common::HistogramsByKey operation_durations_;
  common::Histogram write_batch_size_;
  common::Histogram transactions_per_commit_;
  common::Histogram durable_lag_;
  prometheus::Family<prometheus::Counter>& overloaded_;
  common::MetricCache<prometheus::Counter> overloaded_by_operation_;
  prometheus::Gauge& watchers_;
  prometheus::Counter& deltas_;
  prometheus::Gauge& streams_active_;
  prometheus::Family<prometheus::Counter>& signals_dropped_;
  prometheus::Counter& signals_dropped_at_publish_;
  prometheus::Counter& signals_dropped_at_delivery_;
};

}  // namespace parley::persistence
