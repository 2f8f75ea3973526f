#pragma once

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace parley::edge {

// Every edge metric, registered once at start and shared by all sessions and
// turns. prometheus-cpp metrics are thread-safe, so callers use them directly.
class EdgeMetrics {
  // Declared first: every member below registers into it while being initialised.
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();

 public:
  EdgeMetrics();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  prometheus::Counter& FrameReceived(absl::string_view type);
  prometheus::Counter& FrameSent(absl::string_view type);
  prometheus::Counter& Turn(absl::string_view outcome);
  prometheus::Counter& HandshakeRefused(absl::string_view reason);
  prometheus::Counter& HttpRequest(absl::string_view path, int code);

  prometheus::Gauge& connections;
  prometheus::Counter& connections_total;
  prometheus::Counter& tokens_total;
  prometheus::Counter& coalesced_deltas_total;
  prometheus::Counter& slow_client_closes_total;
  prometheus::Counter& accept_failures_total;
  prometheus::Histogram& time_to_first_token;
  prometheus::Histogram& inter_token_gap;
  prometheus::Histogram& added_latency;
  prometheus::Histogram& turn_duration;

 private:
  prometheus::Family<prometheus::Counter>& frames_received_;
  prometheus::Family<prometheus::Counter>& frames_sent_;
  prometheus::Family<prometheus::Counter>& turns_;
  prometheus::Family<prometheus::Counter>& handshakes_refused_;
  prometheus::Family<prometheus::Counter>& http_requests_;
};

}  // namespace parley::edge
