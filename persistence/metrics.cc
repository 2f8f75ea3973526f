#include "persistence/metrics.h"

namespace parley::persistence {
namespace {

const prometheus::Histogram::BucketBoundaries& BatchSizeBuckets() {
  static const auto* const buckets = new prometheus::Histogram::BucketBoundaries{
      1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
  return *buckets;
}

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

}  // namespace

PersistenceMetrics::PersistenceMetrics(prometheus::Registry& registry, absl::string_view store_kind)
    : store_kind_(store_kind),
      operation_duration_(prometheus::BuildHistogram()
                              .Name("parley_persistence_operation_duration_seconds")
                              .Help("Duration of store operations, by operation and store.")
                              .Register(registry)),
      operation_durations_(registry, operation_duration_, LatencyBuckets()),
      write_batch_size_(registry,
                        prometheus::BuildHistogram()
                            .Name("parley_persistence_write_batch_size")
                            .Help("Deltas committed together in one group-commit transaction.")
                            .Register(registry)
                            .Add({}, BatchSizeBuckets()),
                        BatchSizeBuckets()),
      transactions_per_commit_(
          registry,
          prometheus::BuildHistogram()
              .Name("parley_persistence_transactions_per_commit")
              .Help("Write transactions committed together (SQLite's group commit).")
              .Register(registry)
              .Add({}, BatchSizeBuckets()),
          BatchSizeBuckets()),
      durable_lag_(registry,
                   prometheus::BuildHistogram()
                       .Name("parley_persistence_durable_lag_seconds")
                       .Help("Time from receiving a delta to acknowledging it as durable.")
                       .Register(registry)
                       .Add({}, LatencyBuckets()),
                   LatencyBuckets()),
      overloaded_(prometheus::BuildCounter()
                      .Name("parley_persistence_overloaded_total")
                      .Help("Calls refused with RESOURCE_EXHAUSTED: the store queue was full.")
                      .Register(registry)),
      watchers_(prometheus::BuildGauge()
                    .Name("parley_persistence_watchers")
                    .Help("WatchMessage calls currently following a message.")
                    .Register(registry)
                    .Add({})),
      deltas_(prometheus::BuildCounter()
                  .Name("parley_persistence_deltas_total")
                  .Help("Stream deltas made durable.")
                  .Register(registry)
                  .Add({})),
      streams_active_(prometheus::BuildGauge()
                          .Name("parley_persistence_streams_active")
                          .Help("WriteMessageStream calls currently open.")
                          .Register(registry)
                          .Add({})),
      signals_dropped_(prometheus::BuildCounter()
                           .Name("parley_persistence_signals_dropped_total")
                           .Help("Typing signals dropped because they were too old: refused when "
                                 "published, or not delivered to a watcher.")
                           .Register(registry)),
      signals_dropped_at_publish_(signals_dropped_.Add({{"stage", "publish"}})),
      signals_dropped_at_delivery_(signals_dropped_.Add({{"stage", "delivery"}})) {}

void PersistenceMetrics::ObserveOperation(absl::string_view operation, absl::Duration duration) {
  operation_durations_
      .Get(operation,
           [&] {
             return prometheus::Labels{{"operation", std::string(operation)},
                                       {"store", store_kind_}};
           })
      .Observe(absl::ToDoubleSeconds(duration));
}

void PersistenceMetrics::Overloaded(absl::string_view operation) {
  overloaded_by_operation_
      .Get(operation,
           [&]() -> prometheus::Counter& {
             return overloaded_.Add({{"operation", std::string(operation)}});
           })
      .Increment();
}

}  // namespace parley::persistence
