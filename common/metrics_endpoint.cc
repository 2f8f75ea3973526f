#include "common/metrics_endpoint.h"

#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "prometheus/text_serializer.h"

namespace parley::common {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<HostPort> address = ParseHostPort(listen);
  if (!address.ok()) {
    return address.status();
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb takes IPv6 binds as "[::1]:port" and IPv4 as "host:port".
    exposer = std::make_unique<prometheus::Exposer>(address->ToString(), /*num_threads=*/1);
  } catch (const std::exception& e) {
    // civetweb only says "possible problem binding to port"; find out which problem.
    const absl::Status bindable = CheckCanListen(*address);
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ",
                                               bindable.ok() ? e.what() : bindable.message()));
  }
  exposer->RegisterCollectable(registry);
  const std::vector<int> ports = exposer->GetListeningPorts();
  const int port = ports.empty() ? address->port : ports.front();
  return std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint(std::move(exposer), port));
}

std::string SerializeMetrics(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace parley::common
