#include "edge/metrics.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_metrics.h"

namespace parley::edge {
namespace {

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

prometheus::Histogram& Latency(prometheus::Registry& registry, const std::string& name,
                               const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add(
      {}, common::LatencyBuckets());
}

}  // namespace

EdgeMetrics::EdgeMetrics()
    : connections(prometheus::BuildGauge()
                      .Name("parley_edge_connections")
                      .Help("Open WebSocket connections.")
                      .Register(*registry_)
                      .Add({})),
      connections_total(CounterFamily(*registry_, "parley_edge_connections_total",
                                      "WebSocket connections accepted.")
                            .Add({})),
      tokens_total(CounterFamily(*registry_, "parley_edge_tokens_total",
                                 "Text deltas received from inference and sent to clients.")
                       .Add({})),
      coalesced_deltas_total(
          CounterFamily(*registry_, "parley_edge_coalesced_deltas_total",
                        "Text deltas merged into a previous stream_token under backpressure.")
              .Add({})),
      slow_client_closes_total(CounterFamily(*registry_, "parley_edge_slow_client_closes_total",
                                             "Connections closed because the client did not read.")
                                   .Add({})),
      accept_failures_total(
          CounterFamily(*registry_, "parley_edge_accept_failures_total",
                        "Connections the listener could not accept (usually: out of file "
                        "descriptors).")
              .Add({})),
      time_to_first_token(Latency(*registry_, "parley_edge_time_to_first_token_seconds",
                                  "From a message frame's arrival to its first stream_token.")),
      inter_token_gap(Latency(*registry_, "parley_edge_inter_token_gap_seconds",
                              "Between consecutive text deltas arriving from inference.")),
      added_latency(Latency(*registry_, "parley_edge_added_latency_seconds",
                            "From a delta's arrival from inference to its write to the socket.")),
      turn_duration(Latency(*registry_, "parley_edge_turn_duration_seconds",
                            "From a message frame's arrival to the end of its turn.")),
      frames_received_(
          CounterFamily(*registry_, "parley_edge_frames_received_total",
                        "Client frames received, by type (\"invalid\" if undecodable).")),
      frames_sent_(CounterFamily(*registry_, "parley_edge_frames_sent_total",
                                 "Frames sent to clients, by type.")),
      turns_(CounterFamily(*registry_, "parley_edge_turns_total",
                           "Chat turns finished, by outcome (complete, cancelled, interrupted, "
                           "error).")),
      handshakes_refused_(CounterFamily(*registry_, "parley_edge_handshakes_refused_total",
                                        "WebSocket handshakes refused, by reason.")),
      http_requests_(CounterFamily(*registry_, "parley_edge_http_requests_total",
                                   "HTTP requests served, by path and status code.")) {}

prometheus::Counter& EdgeMetrics::FrameReceived(absl::string_view type) {
  return frames_received_.Add({{"type", std::string(type)}});
}

prometheus::Counter& EdgeMetrics::FrameSent(absl::string_view type) {
  return frames_sent_.Add({{"type", std::string(type)}});
}

prometheus::Counter& EdgeMetrics::Turn(absl::string_view outcome) {
  return turns_.Add({{"outcome", std::string(outcome)}});
}

prometheus::Counter& EdgeMetrics::HandshakeRefused(absl::string_view reason) {
  return handshakes_refused_.Add({{"reason", std::string(reason)}});
}

prometheus::Counter& EdgeMetrics::HttpRequest(absl::string_view path, int code) {
  return http_requests_.Add({{"path", std::string(path)}, {"code", absl::StrCat(code)}});
}

}  // namespace parley::edge
