#include "common/grpc_metrics.h"

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/grpc_server.h"
#include "common/trace_context.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "gtest/gtest.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"
#include "prometheus/text_serializer.h"

namespace parley::common {
namespace {

namespace v1 = ::parley::inference::v1;

// Streams `max_tokens` text deltas; ListModels always fails, so tests see a
// non-OK code. Remembers the trace id each Generate call carried.
class FakeInference final : public v1::InferenceService::CallbackService {
 public:
  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override {
    {
      absl::MutexLock lock(&mutex_);
      const std::optional<TraceContext> trace = IncomingTraceContext(*context);
      last_trace_ = trace.has_value() ? FormatTraceparent(*trace) : "";
    }
    return new Writer(request->sampling().max_tokens());
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest*,
                                       v1::ListModelsResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no engine"));
    return reactor;
  }

  std::string last_trace() {
    absl::MutexLock lock(&mutex_);
    return last_trace_;
  }

 private:
  class Writer : public grpc::ServerWriteReactor<v1::GenerateResponse> {
   public:
    explicit Writer(int count) : left_(count) { Next(); }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::CANCELLED);
        return;
      }
      Next();
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      if (left_-- <= 0) {
        Finish(grpc::Status::OK);
        return;
      }
      response_.mutable_text_delta()->set_text("tok ");
      StartWrite(&response_);
    }
    int left_;
    v1::GenerateResponse response_;
  };

  absl::Mutex mutex_;
  std::string last_trace_ ABSL_GUARDED_BY(mutex_);
};

// The sample value of the series named `name` whose labels include all of
// `labels`, read from the text exposition; -1 when absent.
double SampleValue(prometheus::Registry& registry, const std::string& name,
                   const std::vector<std::string>& labels) {
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) {
      continue;
    }
    bool all = true;
    for (const std::string& label : labels) {
      all = all && line.find(label) != std::string::npos;
    }
    if (all) {
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return -1;
}

class GrpcMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GrpcServerOptions options;
    options.listen = "127.0.0.1:0";
    options.services = {&service_};
    options.metrics_registry = server_registry_;
    options.metrics_service = "inference";
    absl::StatusOr<RunningGrpcServer> running = StartGrpcServer(options);
    ASSERT_TRUE(running.ok()) << running.status();
    server_ = std::move(running->server);
    channel_ = CreateInstrumentedChannel("127.0.0.1:" + std::to_string(running->port),
                                         client_registry_, "edge");
    stub_ = v1::InferenceService::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
  }

  // Runs Generate to its end and returns the number of chunks read.
  int Generate(int tokens, grpc::ClientContext& context) {
    v1::GenerateRequest request;
    request.mutable_sampling()->set_max_tokens(tokens);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    v1::GenerateResponse response;
    int count = 0;
    while (reader->Read(&response)) {
      ++count;
    }
    EXPECT_TRUE(reader->Finish().ok());
    return count;
  }

  std::shared_ptr<prometheus::Registry> server_registry_ = std::make_shared<prometheus::Registry>();
  std::shared_ptr<prometheus::Registry> client_registry_ = std::make_shared<prometheus::Registry>();
  FakeInference service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

TEST_F(GrpcMetricsTest, CountsServerStreamOnBothSides) {
  grpc::ClientContext context;
  ASSERT_EQ(Generate(3, context), 3);

  const std::vector<std::string> generate = {
      R"(grpc_service="parley.inference.v1.InferenceService")", R"(grpc_method="Generate")"};
  std::vector<std::string> ok = generate;
  ok.push_back(R"(grpc_code="OK")");

  prometheus::Registry& server = *server_registry_;
  EXPECT_EQ(SampleValue(server, "parley_inference_grpc_server_handled_total", ok), 1);
  EXPECT_EQ(SampleValue(server, "parley_inference_grpc_server_started_total",
                        {R"(grpc_method="Generate")", R"(grpc_type="server_stream")"}),
            1);
  EXPECT_EQ(SampleValue(server, "parley_inference_grpc_server_msg_sent_total", generate), 3);
  EXPECT_EQ(SampleValue(server, "parley_inference_grpc_server_msg_received_total", generate), 1);
  EXPECT_EQ(SampleValue(server, "parley_inference_grpc_server_handling_seconds_count", generate),
            1);
  // The stream has ended: nothing is left in flight.
  EXPECT_EQ(SampleValue(server, "parley_inference_grpc_server_streams_in_flight", generate), 0);

  prometheus::Registry& client = *client_registry_;
  EXPECT_EQ(SampleValue(client, "parley_edge_grpc_client_handled_total", ok), 1);
  EXPECT_EQ(SampleValue(client, "parley_edge_grpc_client_msg_received_total", generate), 3);
  EXPECT_EQ(SampleValue(client, "parley_edge_grpc_client_msg_sent_total", generate), 1);
  EXPECT_EQ(SampleValue(client, "parley_edge_grpc_client_handling_seconds_count", generate), 1);
}

TEST_F(GrpcMetricsTest, CountsErrorsByCode) {
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    v1::ListModelsResponse response;
    EXPECT_EQ(stub_->ListModels(&context, v1::ListModelsRequest(), &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  const std::vector<std::string> unavailable = {R"(grpc_method="ListModels")",
                                                R"(grpc_code="Unavailable")"};
  EXPECT_EQ(
      SampleValue(*server_registry_, "parley_inference_grpc_server_handled_total", unavailable), 2);
  EXPECT_EQ(SampleValue(*client_registry_, "parley_edge_grpc_client_handled_total", unavailable),
            2);
  // A unary call is not a stream.
  EXPECT_EQ(SampleValue(*server_registry_, "parley_inference_grpc_server_streams_in_flight",
                        {R"(grpc_method="ListModels")"}),
            -1);
}

TEST_F(GrpcMetricsTest, StreamIsInFlightUntilItEnds) {
  grpc::ClientContext context;
  v1::GenerateRequest request;
  request.mutable_sampling()->set_max_tokens(1000000);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub_->Generate(&context, request);
  v1::GenerateResponse response;
  // The server has written a chunk, so its call is open and counted.
  ASSERT_TRUE(reader->Read(&response));
  const std::vector<std::string> generate = {R"(grpc_method="Generate")"};
  EXPECT_EQ(
      SampleValue(*server_registry_, "parley_inference_grpc_server_streams_in_flight", generate),
      1);
  EXPECT_EQ(SampleValue(*client_registry_, "parley_edge_grpc_client_streams_in_flight", generate),
            1);

  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(SampleValue(*client_registry_, "parley_edge_grpc_client_handled_total",
                        {R"(grpc_method="Generate")", R"(grpc_code="Canceled")"}),
            1);
  EXPECT_EQ(SampleValue(*client_registry_, "parley_edge_grpc_client_streams_in_flight", generate),
            0);
}

TEST_F(GrpcMetricsTest, HistogramUsesMillisecondBuckets) {
  grpc::ClientContext context;
  Generate(1, context);
  EXPECT_EQ(SampleValue(*server_registry_, "parley_inference_grpc_server_handling_seconds_bucket",
                        {R"(grpc_method="Generate")", R"(le="0.0005")"}) >= 0,
            true);
  EXPECT_EQ(SampleValue(*server_registry_, "parley_inference_grpc_server_handling_seconds_bucket",
                        {R"(grpc_method="Generate")", R"(le="10")"}),
            1);
}

TEST_F(GrpcMetricsTest, HelpTextOnEveryFamily) {
  for (const prometheus::MetricFamily& family : server_registry_->Collect()) {
    EXPECT_FALSE(family.help.empty()) << family.name;
  }
  for (const prometheus::MetricFamily& family : client_registry_->Collect()) {
    EXPECT_FALSE(family.help.empty()) << family.name;
  }
}

TEST_F(GrpcMetricsTest, TraceContextTravelsInMetadata) {
  const TraceContext turn =
      ContinueOrStartTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  grpc::ClientContext context;
  AttachTraceContext(context, turn);
  Generate(1, context);
  const std::optional<TraceContext> seen = ParseTraceparent(service_.last_trace());
  ASSERT_TRUE(seen.has_value()) << service_.last_trace();
  EXPECT_EQ(seen->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(seen->flags, 1);
  EXPECT_NE(seen->span_id, "00f067aa0ba902b7");
}

TEST_F(GrpcMetricsTest, FinishedCallsAreLoggedWithTheCallersTraceId) {
  const TraceContext turn =
      ContinueOrStartTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ::testing::internal::CaptureStdout();
  {
    grpc::ClientContext context;
    AttachTraceContext(context, turn);
    Generate(2, context);
  }
  {
    grpc::ClientContext context;
    v1::ListModelsResponse response;
    stub_->ListModels(&context, v1::ListModelsRequest(), &response);
  }
  const std::string logs = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(logs.find(R"("level":"info","service":)"), std::string::npos) << logs;
  EXPECT_NE(
      logs.find(
          R"("msg":"rpc finished","grpc_method":"/parley.inference.v1.InferenceService/Generate","grpc_code":"OK")"),
      std::string::npos)
      << logs;
  EXPECT_NE(logs.find(R"("trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"})"), std::string::npos)
      << logs;
  // A failure that blames the server is a warning, and without a traceparent
  // there is no trace id.
  EXPECT_NE(logs.find(R"("level":"warning")"), std::string::npos) << logs;
  EXPECT_NE(
      logs.find(
          R"("grpc_method":"/parley.inference.v1.InferenceService/ListModels","grpc_code":"Unavailable","duration_ms":)"),
      std::string::npos)
      << logs;
}

TEST_F(GrpcMetricsTest, NoTraceContextWhenNoneSent) {
  grpc::ClientContext context;
  Generate(1, context);
  EXPECT_EQ(service_.last_trace(), "");
}

TEST(InstrumentedChannelTest, BalancesRoundRobin) {
  FakeInference service;
  GrpcServerOptions options;
  options.listen = "127.0.0.1:0";
  options.services = {&service};
  absl::StatusOr<RunningGrpcServer> running = StartGrpcServer(options);
  ASSERT_TRUE(running.ok()) << running.status();
  std::shared_ptr<grpc::Channel> channel = CreateInstrumentedChannel(
      "dns:///127.0.0.1:" + std::to_string(running->port), nullptr, "edge");
  auto stub = v1::InferenceService::NewStub(channel);
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  stub->ListModels(&context, v1::ListModelsRequest(), &response);
  EXPECT_EQ(channel->GetLoadBalancingPolicyName(), "round_robin");
  running->server->Shutdown();
}

}  // namespace
}  // namespace parley::common
