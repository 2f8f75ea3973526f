#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace parley::common {

// Serves GET /metrics for one registry on its own port (inference, persistence).
class MetricsEndpoint {
 public:
  // `listen` is HOST:PORT; port 0 picks a free one.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry);

  int port() const { return port_; }

 private:
  MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer, int port)
      : exposer_(std::move(exposer)), port_(port) {}

  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
};

// Renders a registry in the Prometheus text format (the edge serves it itself).
std::string SerializeMetrics(prometheus::Registry& registry);

}  // namespace parley::common
