#include "inference/metrics.h"

#include "absl/strings/str_cat.h"

namespace parley::inference {
namespace {

// Milliseconds matter for streaming latency; long tails are capped at 10 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

// Whole generations run from milliseconds to minutes.
const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
  return *buckets;
}

}  // namespace

InferenceMetrics::InferenceMetrics(prometheus::Registry& registry)
    : streams_active_family_(prometheus::BuildGauge()
                                 .Name("parley_inference_streams_active")
                                 .Help("Generate streams currently open")
                                 .Register(registry)),
      streams_active_(streams_active_family_.Add({})),
      generations_(prometheus::BuildCounter()
                       .Name("parley_inference_generations_total")
                       .Help("Finished generations by model and outcome")
                       .Register(registry)),
      tokens_(prometheus::BuildCounter()
                  .Name("parley_inference_tokens_total")
                  .Help("Text and reasoning deltas sent to clients")
                  .Register(registry)),
      time_to_first_token_(registry,
                           prometheus::BuildHistogram()
                               .Name("parley_inference_time_to_first_token_seconds")
                               .Help("Time from request to the first delta sent")
                               .Register(registry),
                           LatencyBuckets()),
      generation_duration_(registry,
                           prometheus::BuildHistogram()
                               .Name("parley_inference_generation_duration_seconds")
                               .Help("Time from request to the end of the stream")
                               .Register(registry),
                           DurationBuckets()),
      upstream_requests_(prometheus::BuildCounter()
                             .Name("parley_inference_upstream_requests_total")
                             .Help("Upstream HTTP requests by model and outcome")
                             .Register(registry)),
      upstream_time_to_first_token_(
          registry,
          prometheus::BuildHistogram()
              .Name("parley_inference_upstream_time_to_first_token_seconds")
              .Help("Time from sending the upstream request to its first delta")
              .Register(registry),
          LatencyBuckets()),
      upstream_inter_chunk_gap_(registry,
                                prometheus::BuildHistogram()
                                    .Name("parley_inference_upstream_inter_chunk_gap_seconds")
                                    .Help("Silence between consecutive upstream SSE events")
                                    .Register(registry),
                                LatencyBuckets()),
      upstream_active_streams_family_(prometheus::BuildGauge()
                                          .Name("parley_inference_upstream_active_streams")
                                          .Help("Upstream requests currently in flight")
                                          .Register(registry)),
      upstream_active_streams_(upstream_active_streams_family_.Add({})),
      upstream_retries_(prometheus::BuildCounter()
                            .Name("parley_inference_upstream_retries_total")
                            .Help("Upstream requests retried before the first byte")
                            .Register(registry)) {}

prometheus::Counter& InferenceMetrics::Generations(const std::string& model,
                                                   const std::string& outcome) {
  return generations_by_key_.Get(absl::StrCat(model, "\n", outcome), [&]() -> prometheus::Counter& {
    return generations_.Add({{"model", model}, {"outcome", outcome}});
  });
}

prometheus::Counter& InferenceMetrics::Tokens(const std::string& model) {
  return tokens_by_model_.Get(model, [&]() -> prometheus::Counter& {
    return tokens_.Add({{"model", model}});
  });
}

common::Histogram& InferenceMetrics::TimeToFirstToken(const std::string& model) {
  return time_to_first_token_.Get(model, [&] { return prometheus::Labels{{"model", model}}; });
}

common::Histogram& InferenceMetrics::GenerationDuration(const std::string& model) {
  return generation_duration_.Get(model, [&] { return prometheus::Labels{{"model", model}}; });
}

prometheus::Counter& InferenceMetrics::UpstreamRequests(const std::string& model,
                                                        const std::string& outcome) {
  return upstream_requests_by_key_.Get(
      absl::StrCat(model, "\n", outcome), [&]() -> prometheus::Counter& {
        return upstream_requests_.Add({{"model", model}, {"outcome", outcome}});
      });
}

common::Histogram& InferenceMetrics::UpstreamTimeToFirstToken(const std::string& model) {
  return upstream_time_to_first_token_.Get(model, [&] {
    return prometheus::Labels{{"model", model}};
  });
}

common::Histogram& InferenceMetrics::UpstreamInterChunkGap(const std::string& model) {
  return upstream_inter_chunk_gap_.Get(model, [&] { return prometheus::Labels{{"model", model}}; });
}

prometheus::Counter& InferenceMetrics::UpstreamRetries(const std::string& model) {
  return upstream_retries_by_model_.Get(model, [&]() -> prometheus::Counter& {
    return upstream_retries_.Add({{"model", model}});
  });
}

}  // namespace parley::inference
