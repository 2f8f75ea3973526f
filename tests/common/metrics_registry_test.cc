#include "common/metrics_registry.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"

namespace parley::common {
namespace {

const prometheus::Histogram::BucketBoundaries kBounds = {1, 2, 5};

prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& registry) {
  return prometheus::BuildHistogram().Name("test_seconds").Help("test").Register(registry);
}

// The one histogram series the registry exposes.
prometheus::ClientMetric::Histogram Collected(prometheus::Registry& registry) {
  const std::vector<prometheus::MetricFamily> families = registry.Collect();
  EXPECT_EQ(families.size(), 1u);
  EXPECT_EQ(families.at(0).metric.size(), 1u);
  return families.at(0).metric.at(0).histogram;
}

TEST(MetricsRegistryTest, AScrapeSeesEveryObservationInItsBucket) {
  MetricsRegistry registry;
  Histogram histogram(registry, HistogramFamily(registry).Add({}, kBounds), kBounds);
  for (double value : {0.5, 1.0, 1.5, 5.0, 7.0}) {
    histogram.Observe(value);
  }

  prometheus::ClientMetric::Histogram collected = Collected(registry);
  EXPECT_EQ(collected.sample_count, 5u);
  EXPECT_DOUBLE_EQ(collected.sample_sum, 15.0);
  ASSERT_EQ(collected.bucket.size(), 4u);
  // Cumulative, "less than or equal": 1 → {0.5, 1}, 2 → +1.5, 5 → +5, +Inf → +7.
  EXPECT_EQ(collected.bucket[0].cumulative_count, 2u);
  EXPECT_EQ(collected.bucket[1].cumulative_count, 3u);
  EXPECT_EQ(collected.bucket[2].cumulative_count, 4u);
  EXPECT_EQ(collected.bucket[3].cumulative_count, 5u);

  // A second scrape adds only what came since.
  histogram.Observe(3);
  collected = Collected(registry);
  EXPECT_EQ(collected.sample_count, 6u);
  EXPECT_DOUBLE_EQ(collected.sample_sum, 18.0);
  EXPECT_EQ(collected.bucket[2].cumulative_count, 5u);
}

TEST(MetricsRegistryTest, ObservationsFromManyThreadsDuringScrapesAreAllCounted) {
  MetricsRegistry registry;
  Histogram histogram(registry, HistogramFamily(registry).Add({}, kBounds), kBounds);
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::vector<std::thread> observers;
  for (int t = 0; t < kThreads; ++t) {
    observers.emplace_back([&histogram] {
      for (int i = 0; i < kEach; ++i) {
        histogram.Observe(i % 2 == 0 ? 0.5 : 3.0);
      }
    });
  }
  for (int scrape = 0; scrape < 50; ++scrape) {
    registry.Collect();
  }
  for (std::thread& observer : observers) {
    observer.join();
  }

  const prometheus::ClientMetric::Histogram collected = Collected(registry);
  EXPECT_EQ(collected.sample_count, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_DOUBLE_EQ(collected.sample_sum, kThreads * kEach / 2 * (0.5 + 3.0));
  EXPECT_EQ(collected.bucket[0].cumulative_count, static_cast<uint64_t>(kThreads * kEach / 2));
}

TEST(MetricsRegistryTest, AHistogramGoneKeepsWhatItObservedInItsSeries) {
  MetricsRegistry registry;
  prometheus::Histogram& series = HistogramFamily(registry).Add({}, kBounds);
  {
    Histogram histogram(registry, series, kBounds);
    histogram.Observe(1);
    histogram.Observe(10);
  }
  const prometheus::ClientMetric::Histogram collected = Collected(registry);
  EXPECT_EQ(collected.sample_count, 2u);
  EXPECT_DOUBLE_EQ(collected.sample_sum, 11.0);
}

TEST(MetricsRegistryTest, WithAPlainRegistryAHistogramObservesItsSeriesDirectly) {
  prometheus::Registry registry;
  Histogram histogram(registry, HistogramFamily(registry).Add({}, kBounds), kBounds);
  histogram.Observe(2);
  const prometheus::ClientMetric::Histogram collected = Collected(registry);
  EXPECT_EQ(collected.sample_count, 1u);
  EXPECT_EQ(collected.bucket[1].cumulative_count, 1u);
}

TEST(MetricCacheTest, EachKeyIsMadeOnceAndFoundAgainPastTheLockFreeTable) {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& family =
      prometheus::BuildCounter().Name("test_total").Help("test").Register(registry);
  MetricCache<prometheus::Counter> cache;
  int made = 0;
  const auto get = [&](const std::string& key) -> prometheus::Counter& {
    return cache.Get(key, [&]() -> prometheus::Counter& {
      ++made;
      return family.Add({{"key", key}});
    });
  };
  constexpr int kKeys = MetricCache<prometheus::Counter>::kCapacity * 2;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kKeys; ++i) {
      get(absl::StrCat("key", i)).Increment();
    }
  }
  EXPECT_EQ(made, kKeys);
  EXPECT_EQ(&get("key0"), &family.Add({{"key", "key0"}}));
  EXPECT_EQ(&get(absl::StrCat("key", kKeys - 1)),
            &family.Add({{"key", absl::StrCat("key", kKeys - 1)}}));
  EXPECT_DOUBLE_EQ(get("key7").Value(), 3.0);
}

}  // namespace
}  // namespace parley::common
