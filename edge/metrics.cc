#include "edge/metrics.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_metrics.h"

namespace parley::edge {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

Family<Counter>& CounterFamily(prometheus::Registry& registry, const std::string& name,
                               const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

Family<Histogram>& LatencyFamily(prometheus::Registry& registry, const std::string& name,
                                 const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

}  // namespace

struct DialectMetrics::Families {
  explicit Families(prometheus::Registry& registry)
      : registry(registry),
        connections(prometheus::BuildGauge()
                        .Name("parley_edge_connections")
                        .Help("Open client connections, by dialect.")
                        .Register(registry)),
        connections_total(CounterFamily(registry, "parley_edge_connections_total",
                                        "Client connections accepted, by dialect.")),
        tokens_total(CounterFamily(registry, "parley_edge_tokens_total",
                                   "Text deltas received from inference and sent to clients.")),
        coalesced_deltas_total(
            CounterFamily(registry, "parley_edge_coalesced_deltas_total",
                          "Text deltas merged into a previous stream_token under backpressure.")),
        slow_client_closes_total(CounterFamily(registry, "parley_edge_slow_client_closes_total",
                                               "Connections closed because the client did not "
                                               "read.")),
        time_to_first_token(LatencyFamily(registry, "parley_edge_time_to_first_token_seconds",
                                          "From a message frame's arrival to its first "
                                          "stream_token.")),
        inter_token_gap(LatencyFamily(registry, "parley_edge_inter_token_gap_seconds",
                                      "Between consecutive text deltas arriving from inference.")),
        added_latency(LatencyFamily(registry, "parley_edge_added_latency_seconds",
                                    "From a delta's arrival from inference to its write to the "
                                    "socket.")),
        turn_duration(LatencyFamily(registry, "parley_edge_turn_duration_seconds",
                                    "From a message frame's arrival to the end of its turn.")),
        frames_received(CounterFamily(registry, "parley_edge_frames_received_total",
                                      "Client frames received, by dialect and type (\"invalid\" if "
                                      "undecodable).")),
        frames_sent(CounterFamily(registry, "parley_edge_frames_sent_total",
                                  "Frames sent to clients, by dialect and type.")),
        turns(CounterFamily(registry, "parley_edge_turns_total",
                            "Chat turns finished, by dialect and outcome (complete, cancelled, "
                            "interrupted, error).")) {}

  prometheus::Registry& registry;
  Family<Gauge>& connections;
  Family<Counter>& connections_total;
  Family<Counter>& tokens_total;
  Family<Counter>& coalesced_deltas_total;
  Family<Counter>& slow_client_closes_total;
  Family<Histogram>& time_to_first_token;
  Family<Histogram>& inter_token_gap;
  Family<Histogram>& added_latency;
  Family<Histogram>& turn_duration;
  Family<Counter>& frames_received;
  Family<Counter>& frames_sent;
  Family<Counter>& turns;
};

DialectMetrics::DialectMetrics(Families& families, const std::string& dialect)
    : connections(families.connections.Add({{"dialect", dialect}})),
      connections_total(families.connections_total.Add({{"dialect", dialect}})),
      tokens_total(families.tokens_total.Add({{"dialect", dialect}})),
      coalesced_deltas_total(families.coalesced_deltas_total.Add({{"dialect", dialect}})),
      slow_client_closes_total(families.slow_client_closes_total.Add({{"dialect", dialect}})),
      time_to_first_token(
          families.registry,
          families.time_to_first_token.Add({{"dialect", dialect}}, common::LatencyBuckets()),
          common::LatencyBuckets()),
      inter_token_gap(
          families.registry,
          families.inter_token_gap.Add({{"dialect", dialect}}, common::LatencyBuckets()),
          common::LatencyBuckets()),
      added_latency(families.registry,
                    families.added_latency.Add({{"dialect", dialect}}, common::LatencyBuckets()),
                    common::LatencyBuckets()),
      turn_duration(families.registry,
                    families.turn_duration.Add({{"dialect", dialect}}, common::LatencyBuckets()),
                    common::LatencyBuckets()),
      families_(families),
      dialect_(dialect) {}

Counter& DialectMetrics::FrameReceived(absl::string_view type) {
  return frames_received_.Get(type, [&]() -> Counter& {
    return families_.frames_received.Add({{"dialect", dialect_}, {"type", std::string(type)}});
  });
}

Counter& DialectMetrics::FrameSent(absl::string_view type) {
  return frames_sent_.Get(type, [&]() -> Counter& {
    return families_.frames_sent.Add({{"dialect", dialect_}, {"type", std::string(type)}});
  });
}

Counter& DialectMetrics::Turn(absl::string_view outcome) {
  return turns_.Get(outcome, [&]() -> Counter& {
    return families_.turns.Add({{"dialect", dialect_}, {"outcome", std::string(outcome)}});
  });
}

EdgeMetrics::EdgeMetrics()
    : families_(std::make_unique<DialectMetrics::Families>(*registry_)),
      accept_failures_total(
          CounterFamily(*registry_, "parley_edge_accept_failures_total",
                        "Connections the listener could not accept (usually: out of file "
                        "descriptors).")
              .Add({})),
      handshakes_refused_(CounterFamily(*registry_, "parley_edge_handshakes_refused_total",
                                        "Client handshakes refused, by reason.")),
      http_requests_(CounterFamily(*registry_, "parley_edge_http_requests_total",
                                   "HTTP requests served, by path and status code.")) {}

EdgeMetrics::~EdgeMetrics() = default;

DialectMetrics& EdgeMetrics::Dialect(absl::string_view dialect) {
  absl::MutexLock lock(&mutex_);
  auto it = dialects_.find(dialect);
  if (it == dialects_.end()) {
    const std::string name(dialect);
    it = dialects_.emplace(name, std::make_unique<DialectMetrics>(*families_, name)).first;
  }
  return *it->second;
}

Counter& EdgeMetrics::HandshakeRefused(absl::string_view reason) {
  return handshakes_refused_.Add({{"reason", std::string(reason)}});
}

Counter& EdgeMetrics::HttpRequest(absl::string_view path, int code) {
  return http_requests_.Add({{"path", std::string(path)}, {"code", absl::StrCat(code)}});
}

}  // namespace parley::edge
