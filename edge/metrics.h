#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics_registry.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace parley::edge {

// The connection, frame and turn metrics of one client dialect: every series carries the label
// `dialect` (native, copilot, ai_chat, agent, socketio), so each dialect is watched alike.
// Created by EdgeMetrics::Dialect; thread-safe, and lock-free on the per-token path (its
// histograms are common::Histograms, its counters by type are cached).
class DialectMetrics {
 public:
  struct Families;
  DialectMetrics(Families& families, const std::string& dialect);

  prometheus::Counter& FrameReceived(absl::string_view type);
  prometheus::Counter& FrameSent(absl::string_view type);
  prometheus::Counter& Turn(absl::string_view outcome);

  prometheus::Gauge& connections;
  prometheus::Counter& connections_total;
  prometheus::Counter& tokens_total;
  prometheus::Counter& coalesced_deltas_total;
  prometheus::Counter& slow_client_closes_total;
  common::Histogram time_to_first_token;
  common::Histogram inter_token_gap;
  common::Histogram added_latency;
  common::Histogram turn_duration;

 private:
  Families& families_;
  const std::string dialect_;
  // By frame type or outcome: a frame sent takes no lock shared with other connections.
  common::MetricCache<prometheus::Counter> frames_received_;
  common::MetricCache<prometheus::Counter> frames_sent_;
  common::MetricCache<prometheus::Counter> turns_;
};

// Every edge metric, registered once at start and shared by all sessions and
// turns. prometheus-cpp metrics are thread-safe, so callers use them directly.
class EdgeMetrics {
  // Declared first: every member below registers into it while being initialised.
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<common::MetricsRegistry>();

 public:
  EdgeMetrics();
  ~EdgeMetrics();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // The metrics of the dialect labelled `dialect`, created on first use. Any thread.
  DialectMetrics& Dialect(absl::string_view dialect);

  prometheus::Counter& HandshakeRefused(absl::string_view reason);
  prometheus::Counter& HttpRequest(absl::string_view path, int code);

 private:
  std::unique_ptr<DialectMetrics::Families> families_;

 public:
  // Of the listener, before any dialect is known.
  prometheus::Counter& accept_failures_total;

 private:
  prometheus::Family<prometheus::Counter>& handshakes_refused_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  absl::Mutex mutex_;
  std::map<std::string, std::unique_ptr<DialectMetrics>, std::less<>> dialects_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::edge
