#pragma once

#include <string>

#include "common/metrics_registry.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace parley::inference {

// The service's Prometheus metrics. Families are registered once; the per-model accessors are
// safe from any thread and, once a model has been seen, lock-free (see common::MetricsRegistry).
class InferenceMetrics {
 public:
  explicit InferenceMetrics(prometheus::Registry& registry);

  prometheus::Gauge& streams_active() { return streams_active_; }
  // outcome: complete | cancelled | deadline_exceeded | error.
  prometheus::Counter& Generations(const std::string& model, const std::string& outcome);
  prometheus::Counter& Tokens(const std::string& model);
  common::Histogram& TimeToFirstToken(const std::string& model);
  common::Histogram& GenerationDuration(const std::string& model);

  // outcome: ok | cancelled | timeout | connect_error | http_<code> | protocol_error.
  prometheus::Counter& UpstreamRequests(const std::string& model, const std::string& outcome);
  common::Histogram& UpstreamTimeToFirstToken(const std::string& model);
  common::Histogram& UpstreamInterChunkGap(const std::string& model);
  prometheus::Gauge& upstream_active_streams() { return upstream_active_streams_; }
  prometheus::Counter& UpstreamRetries(const std::string& model);

 private:
  prometheus::Family<prometheus::Gauge>& streams_active_family_;
  prometheus::Gauge& streams_active_;
  prometheus::Family<prometheus::Counter>& generations_;
  common::MetricCache<prometheus::Counter> generations_by_key_;
  prometheus::Family<prometheus::Counter>& tokens_;
  common::MetricCache<prometheus::Counter> tokens_by_model_;
  common::HistogramsByKey time_to_first_token_;
  common::HistogramsByKey generation_duration_;
  prometheus::Family<prometheus::Counter>& upstream_requests_;
  common::MetricCache<prometheus::Counter> upstream_requests_by_key_;
  common::HistogramsByKey upstream_time_to_first_token_;
  common::HistogramsByKey upstream_inter_chunk_gap_;
  prometheus::Family<prometheus::Gauge>& upstream_active_streams_family_;
  prometheus::Gauge& upstream_active_streams_;
  prometheus::Family<prometheus::Counter>& upstream_retries_;
  common::MetricCache<prometheus::Counter> upstream_retries_by_model_;
};

}  // namespace parley::inference
