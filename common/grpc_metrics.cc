#include "common/grpc_metrics.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics_registry.h"
#include "common/trace_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace parley::common {
namespace {

using grpc::experimental::ClientRpcInfo;
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::Interceptor;
using grpc::experimental::InterceptorBatchMethods;
using grpc::experimental::ServerRpcInfo;
using Clock = std::chrono::steady_clock;

// Canonical names, as grpc-go and the Prometheus gRPC exporters spell them, so
// dashboards written for other gRPC services read these too.
std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "Canceled";
    case grpc::StatusCode::UNKNOWN:
      return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case grpc::StatusCode::ABORTED:
      return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "Internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "Unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return absl::StrCat(static_cast<int>(code));
  }
}

// "/parley.inference.v1.InferenceService/Generate" → service and method.
std::pair<std::string, std::string> SplitMethod(const char* full_method) {
  std::string text = full_method == nullptr ? "" : full_method;
  if (!text.empty() && text.front() == '/') {
    text.erase(0, 1);
  }
  const size_t slash = text.find('/');
  if (slash == std::string::npos) {
    return {"unknown", text.empty() ? "unknown" : text};
  }
  return {text.substr(0, slash), text.substr(slash + 1)};
}

const char* TypeName(int type) {
  switch (type) {
    case 0:
      return "unary";
    case 1:
      return "client_stream";
    case 2:
      return "server_stream";
    default:
      return "bidi_stream";
  }
}

// The metric families of one side (server or client) of one service.
struct MethodMetrics;

struct Families {
  Families(std::shared_ptr<prometheus::Registry> registry_in, const std::string& prefix,
           const std::string& side)
      : registry(std::move(registry_in)),
        started(prometheus::BuildCounter()
                    .Name(absl::StrCat(prefix, "_started_total"))
                    .Help(absl::StrCat("RPCs started on the ", side, " side."))
                    .Register(*registry)),
        handled(
            prometheus::BuildCounter()
                .Name(absl::StrCat(prefix, "_handled_total"))
                .Help(absl::StrCat("RPCs completed on the ", side, " side, by gRPC status code."))
                .Register(*registry)),
        handling(prometheus::BuildHistogram()
                     .Name(absl::StrCat(prefix, "_handling_seconds"))
                     .Help(absl::StrCat("Time from the start of an RPC to its status on the ", side,
                                        " side, in seconds (whole streams included)."))
                     .Register(*registry)),
        in_flight(prometheus::BuildGauge()
                      .Name(absl::StrCat(prefix, "_streams_in_flight"))
                      .Help(absl::StrCat("Streaming RPCs currently open on the ", side, " side."))
                      .Register(*registry)),
        received(prometheus::BuildCounter()
                     .Name(absl::StrCat(prefix, "_msg_received_total"))
                     .Help(absl::StrCat("Messages received on the ", side, " side."))
                     .Register(*registry)),
        sent(prometheus::BuildCounter()
                 .Name(absl::StrCat(prefix, "_msg_sent_total"))
                 .Help(absl::StrCat("Messages sent on the ", side, " side."))
                 .Register(*registry)) {}

  // The metrics of the method `full_method` (of `type`): made on its first call, then found
  // without a lock.
  MethodMetrics& Method(const char* full_method, int type);

  // First: every family below lives in it.
  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& started;
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling;
  prometheus::Family<prometheus::Gauge>& in_flight;
  prometheus::Family<prometheus::Counter>& received;
  prometheus::Family<prometheus::Counter>& sent;

 private:
  MetricCache<MethodMetrics> methods_;
  absl::Mutex mutex_;
  std::vector<std::unique_ptr<MethodMetrics>> owned_ ABSL_GUARDED_BY(mutex_);
};

// The series of one method on one side.
struct MethodMetrics {
  MethodMetrics(Families& families, const char* full_method, int type)
      : names(SplitMethod(full_method)),
        labels{{"grpc_service", names.first}, {"grpc_method", names.second}},
        started(families.started.Add({{"grpc_service", names.first},
                                      {"grpc_method", names.second},
                                      {"grpc_type", TypeName(type)}})),
        handling(*families.registry, families.handling.Add(labels, LatencyBuckets()),
                 LatencyBuckets()),
        received(families.received.Add(labels)),
        sent(families.sent.Add(labels)),
        in_flight(type != 0 ? &families.in_flight.Add(labels) : nullptr),
        handled_family(families.handled) {}

  prometheus::Counter& Handled(grpc::StatusCode code) {
    const char key = static_cast<char>(code);
    return handled.Get(absl::string_view(&key, 1), [&]() -> prometheus::Counter& {
      return handled_family.Add({{"grpc_service", names.first},
                                 {"grpc_method", names.second},
                                 {"grpc_code", CodeName(code)}});
    });
  }

  const std::pair<std::string, std::string> names;  // service, method
  const prometheus::Labels labels;
  prometheus::Counter& started;
  Histogram handling;
  prometheus::Counter& received;
  prometheus::Counter& sent;
  prometheus::Gauge* const in_flight;  // Streaming methods only.
  prometheus::Family<prometheus::Counter>& handled_family;
  MetricCache<prometheus::Counter> handled;  // By code.
};

MethodMetrics& Families::Method(const char* full_method, int type) {
  return methods_.Get(full_method == nullptr ? "" : full_method, [&]() -> MethodMetrics& {
    absl::MutexLock lock(&mutex_);
    owned_.push_back(std::make_unique<MethodMetrics>(*this, full_method, type));
    return *owned_.back();
  });
}

// Per-RPC bookkeeping shared by the server and client interceptors. Finds the method's metrics
// once at the start of the call (without a lock after the method's first call), so the hot path
// of a stream (one hook per message) touches only atomics.
class CallMetrics {
 public:
  CallMetrics(std::shared_ptr<Families> families, const char* full_method, int type)
      : families_(std::move(families)),
        metrics_(families_->Method(full_method, type)),
        start_(Clock::now()) {
    metrics_.started.Increment();
    if (metrics_.in_flight != nullptr) {
      metrics_.in_flight->Increment();
    }
  }

  ~CallMetrics() {
    // A call that ends without a status (the peer went away) counts as cancelled.
    Finish(grpc::StatusCode::CANCELLED);
  }

  void MessageReceived() { metrics_.received.Increment(); }
  void MessageSent() { metrics_.sent.Increment(); }

  // Records the outcome once; later calls are ignored.
  void Finish(grpc::StatusCode code) {
    if (finished_.exchange(true)) {
      return;
    }
    const std::chrono::duration<double> elapsed = Clock::now() - start_;
    metrics_.handling.Observe(elapsed.count());
    metrics_.Handled(code).Increment();
    if (metrics_.in_flight != nullptr) {
      metrics_.in_flight->Decrement();
    }
  }

 private:
  std::shared_ptr<Families> families_;  // Keeps metrics_ alive.
  MethodMetrics& metrics_;
  Clock::time_point start_;
  std::atomic<bool> finished_{false};
};

class ServerMetricsInterceptor : public Interceptor {
 public:
  ServerMetricsInterceptor(std::shared_ptr<Families> families, ServerRpcInfo* info)
      : call_(std::move(families), info->method(), static_cast<int>(info->type())) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      call_.MessageReceived();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      call_.MessageSent();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      call_.Finish(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  CallMetrics call_;
};

class ClientMetricsInterceptor : public Interceptor {
 public:
  ClientMetricsInterceptor(std::shared_ptr<Families> families, ClientRpcInfo* info)
      : call_(std::move(families), info->method(), static_cast<int>(info->type())) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      call_.MessageSent();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      call_.MessageReceived();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      const grpc::Status* status = methods->GetRecvStatus();
      call_.Finish(status == nullptr ? grpc::StatusCode::UNKNOWN : status->error_code());
    }
    methods->Proceed();
  }

 private:
  CallMetrics call_;
};

// Writes one JSON log line per finished RPC (method, code, duration and the
// caller's trace id), so a turn can be followed into the backends' logs by
// the trace id the edge sent. Health checks and reflection are not logged:
// probes would drown everything else.
class CallLogInterceptor : public Interceptor {
 public:
  explicit CallLogInterceptor(const char* method) : method_(method), start_(Clock::now()) {}

  ~CallLogInterceptor() override { Finish(grpc::StatusCode::CANCELLED); }

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      if (auto* metadata = methods->GetRecvInitialMetadata()) {
        const auto it = metadata->find(kTraceparentKey);
        if (it != metadata->end()) {
          if (std::optional<TraceContext> trace =
                  ParseTraceparent(absl::string_view(it->second.data(), it->second.size()))) {
            trace_id_ = trace->trace_id;
          }
        }
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Finish(grpc::StatusCode code) {
    if (logged_) {
      return;
    }
    logged_ = true;
    const std::chrono::duration<double, std::milli> elapsed = Clock::now() - start_;
    const std::string code_name = CodeName(code);
    const std::string duration = absl::StrCat(static_cast<int64_t>(elapsed.count()));
    // Codes that blame the server are worth a look; the rest are ordinary.
    const bool server_fault =
        code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::INTERNAL ||
        code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DATA_LOSS;
    const LogLevel level = server_fault ? LogLevel::kWarning : LogLevel::kInfo;
    if (trace_id_.empty()) {
      Log(level, "rpc finished",
          {{"grpc_method", method_}, {"grpc_code", code_name}, {"duration_ms", duration}});
    } else {
      Log(level, "rpc finished",
          {{"grpc_method", method_},
           {"grpc_code", code_name},
           {"duration_ms", duration},
           {"trace_id", trace_id_}});
    }
  }

  std::string method_;
  Clock::time_point start_;
  std::string trace_id_;
  // Hooks of one call never run concurrently, and the destructor runs last.
  bool logged_ = false;
};

class CallLogFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  Interceptor* CreateServerInterceptor(ServerRpcInfo* info) override {
    const char* method = info->method() == nullptr ? "" : info->method();
    if (absl::StartsWith(method, "/grpc.health.") ||
        absl::StartsWith(method, "/grpc.reflection.")) {
      return nullptr;
    }
    return new CallLogInterceptor(method);
  }
};

class ServerFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  ServerFactory(std::shared_ptr<prometheus::Registry> registry, const std::string& service)
      : registry_(std::move(registry)),
        families_(std::make_shared<Families>(
            registry_, absl::StrCat("parley_", service, "_grpc_server"), "server")) {}

  Interceptor* CreateServerInterceptor(ServerRpcInfo* info) override {
    return new ServerMetricsInterceptor(families_, info);
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;  // Keeps the families alive.
  std::shared_ptr<Families> families_;
};

class ClientFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  ClientFactory(std::shared_ptr<prometheus::Registry> registry, const std::string& service)
      : registry_(std::move(registry)),
        families_(std::make_shared<Families>(
            registry_, absl::StrCat("parley_", service, "_grpc_client"), "client")) {}

  Interceptor* CreateClientInterceptor(ClientRpcInfo* info) override {
    return new ClientMetricsInterceptor(families_, info);
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Families> families_;
};

}  // namespace

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return kBuckets;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeServerMetricsInterceptorFactory(std::shared_ptr<prometheus::Registry> registry,
                                    const std::string& service) {
  return std::make_unique<ServerFactory>(std::move(registry), service);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeServerCallLogInterceptorFactory() {
  return std::make_unique<CallLogFactory>();
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>
MakeClientMetricsInterceptorFactory(std::shared_ptr<prometheus::Registry> registry,
                                    const std::string& service) {
  return std::make_unique<ClientFactory>(std::move(registry), service);
}

std::shared_ptr<grpc::Channel> CreateInstrumentedChannel(
    const std::string& target, std::shared_ptr<prometheus::Registry> registry,
    const std::string& service, grpc::ChannelArguments args) {
  // Without this a channel sticks to the first address (pick_first), and a
  // headless Service would send every stream of one edge to one pod.
  args.SetServiceConfigJSON(R"({"loadBalancingConfig":[{"round_robin":{}}]})");
  const std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (registry == nullptr) {
    return grpc::CreateCustomChannel(target, credentials, args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> creators;
  creators.push_back(MakeClientMetricsInterceptorFactory(std::move(registry), service));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, args,
                                                                 std::move(creators));
}

}  // namespace parley::common
