#include "inference/engines/openai_engine.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "inference/inference_service.h"
#include "inference/io_threads.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/inference/recorded_streams.h"

namespace parley::inference {
namespace {

using ::testing::ElementsAre;
using testing::FakeOpenAiServer;
using testing::FakeReply;
using ::testing::HasSubstr;
using testing::JsonReply;
using testing::SilentReply;
using testing::SplitEvery;
using testing::SseReply;

// One chunk as a short string, so a whole stream reads as one expectation.
std::string Render(const v1::GenerateResponse& chunk) {
  if (chunk.has_text_delta()) {
    return "text:" + chunk.text_delta().text();
  }
  if (chunk.has_reasoning_delta()) {
    return "think:" + chunk.reasoning_delta().text();
  }
  if (chunk.has_usage()) {
    const v1::Usage& usage = chunk.usage();
    return absl::StrCat("usage:", usage.prompt_tokens(), "/", usage.completion_tokens(), "/",
                        usage.reasoning_tokens(), usage.estimated() ? " estimated" : "");
  }
  if (chunk.has_finish()) {
    return "finish:" + v1::FinishReason_Name(chunk.finish().reason());
  }
  return "empty";
}

struct Received {
  std::vector<std::string> chunks;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
};

// "Hi" as the only message is estimated at 2 + 4 + 1 = 7 prompt tokens.
constexpr int kEstimatedPromptTokens = 7;

class OpenAiEngineTest : public ::testing::Test {
 protected:
  static OpenAiEngine::Options FastOptions() {
    OpenAiEngine::Options options;
    options.connect_timeout = absl::Seconds(5);
    options.max_silence = absl::Seconds(20);
    options.max_retries = 2;
    options.retry_backoff = absl::Milliseconds(5);
    options.max_retry_wait = absl::Seconds(5);
    return options;
  }

  // Serves model "up" from `url` through a real in-process gRPC server.
  void StartService(const std::string& url, OpenAiEngine::Options options = FastOptions(),
                    std::string ca_file = "") {
    absl::StatusOr<std::shared_ptr<UpstreamTransport>> transport =
        UpstreamTransport::Create(io_.context(), {.ca_file = ca_file, .max_idle_per_origin = 4});
    ASSERT_TRUE(transport.ok()) << transport.status();
    absl::StatusOr<UpstreamUrl> parsed = ParseUpstreamUrl(url);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    v1::Model info;
    info.set_name("up");
    info.set_engine("openai");
    info.set_upstream_model("upstream-model");
    models_.Add(
        info, std::make_shared<OpenAiEngine>(OpenAiEngine::Route{.public_name = "up",
                                                                 .url = *parsed,
                                                                 .upstream_model = "upstream-model",
                                                                 .api_key = "sk-test-key",
                                                                 .defaults = {}},
                                             options, *transport, &metrics_));
    service_ = std::make_unique<InferenceService>(models_, metrics_);
    common::GrpcServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    server_options.services = {service_.get()};
    absl::StatusOr<common::RunningGrpcServer> server = common::StartGrpcServer(server_options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::InferenceService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_.port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_.server) {
      server_.server->Shutdown();
    }
  }

  static v1::GenerateRequest Hi() {
    v1::GenerateRequest request;
    request.set_model("up");
    v1::ChatMessage* user = request.add_messages();
    user->set_role(v1::ROLE_USER);
    user->set_content("Hi");
    return request;
  }

  Received Generate(absl::Duration deadline = absl::Seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    auto reader = stub_->Generate(&context, Hi());
    Received received;
    v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) {
      std::string rendered = Render(chunk);
      // The service may send deltas that waited behind a write as one: what counts is the text
      // of each kind in order, so consecutive deltas of a kind are compared as one.
      for (absl::string_view kind : {"text:", "think:"}) {
        if (!received.chunks.empty() && absl::StartsWith(received.chunks.back(), kind) &&
            absl::StartsWith(rendered, kind)) {
          received.chunks.back() += rendered.substr(kind.size());
          rendered.clear();
        }
      }
      if (!rendered.empty()) {
        received.chunks.push_back(std::move(rendered));
      }
    }
    const grpc::Status status = reader->Finish();
    received.code = status.error_code();
    received.message = status.error_message();
    return received;
  }

  double MetricValue(const std::string& name, const std::string& label_fragment = "") {
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != name) {
        continue;
      }
      double total = 0;
      for (const prometheus::ClientMetric& metric : family.metric) {
        std::string labels;
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          labels += label.name + "=" + label.value + ",";
        }
        if (labels.find(label_fragment) != std::string::npos) {
          total += metric.counter.value + metric.gauge.value;
        }
      }
      return total;
    }
    return 0;
  }

  IoThreads io_{2};
  prometheus::Registry registry_;
  InferenceMetrics metrics_{registry_};
  ModelRegistry models_;
  std::unique_ptr<InferenceService> service_;
  common::RunningGrpcServer server_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

// --- Recorded shapes of real servers. ---

TEST_F(OpenAiEngineTest, OpenAiStreamWithUsageOnlyFinalChunk) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(SplitEvery(testing::kOpenAiStream, 200)));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks, ElementsAre("text:Hello! How can I help?", "usage:9/8/0",
                                      "finish:FINISH_REASON_STOP"));
}

TEST_F(OpenAiEngineTest, VllmStreamWithReasoningContent) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(std::string(testing::kVllmReasoningStream)));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks, ElementsAre("think:The user says hi.", "text:Hi there.", "usage:7/6/0",
                                      "finish:FINISH_REASON_STOP"));
}

TEST_F(OpenAiEngineTest, LlamaCppStreamWithUsageOnTheFinishChunk) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(SplitEvery(testing::kLlamaCppStream, 97)));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks,
              ElementsAre("text:Hello there", "usage:5/2/0", "finish:FINISH_REASON_LENGTH"));
}

TEST_F(OpenAiEngineTest, OllamaStreamWithReasoning) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(std::string(testing::kOllamaStream)));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks,
              ElementsAre("think:Okay.", "text:Hey!", "usage:11/4/0", "finish:FINISH_REASON_STOP"));
}

TEST_F(OpenAiEngineTest, SendsAStreamingRequestWithTheKeyAndUpstreamModel) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(std::string(testing::kOllamaStream)));
  StartService(upstream.url() + "/v1");
  ASSERT_EQ(Generate().code, grpc::StatusCode::OK);
  const std::vector<FakeOpenAiServer::Request> requests = upstream.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/v1/chat/completions");
  EXPECT_EQ(requests[0].authorization, "Bearer sk-test-key");
  const boost::json::value body = boost::json::parse(requests[0].body);
  EXPECT_EQ(body.at("model"), "upstream-model");
  EXPECT_EQ(body.at("stream"), true);
  EXPECT_EQ(body.at("stream_options").at("include_usage"), true);
  EXPECT_EQ(body.at("messages").at(0).at("content"), "Hi");
}

// --- Hostile upstreams. ---

TEST_F(OpenAiEngineTest, OneBytePerRead) {
  FakeOpenAiServer upstream;
  FakeReply reply = SseReply(SplitEvery(testing::kLlamaCppStream, 1));
  reply.pause_between_writes = absl::Microseconds(200);
  upstream.Enqueue(reply);
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks,
              ElementsAre("text:Hello there", "usage:5/2/0", "finish:FINISH_REASON_LENGTH"));
}

TEST_F(OpenAiEngineTest, EventsSplitInsideUtf8Characters) {
  const std::string body =
      "data: {\"choices\":[{\"delta\":{\"content\":\"h\xC3\xA9llo \xF0\x9F\x98\x80\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
      "data: [DONE]\n\n";
  const size_t e_acute = body.find('\xC3');
  const size_t emoji = body.find('\xF0');
  FakeReply reply =
      SseReply({body.substr(0, e_acute + 1), body.substr(e_acute + 1, emoji + 2 - e_acute - 1),
                body.substr(emoji + 2)});
  reply.pause_between_writes = absl::Milliseconds(2);
  FakeOpenAiServer upstream;
  upstream.Enqueue(reply);
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks,
              ElementsAre("text:h\xC3\xA9llo \xF0\x9F\x98\x80",
                          absl::StrCat("usage:", kEstimatedPromptTokens, "/1/0 estimated"),
                          "finish:FINISH_REASON_STOP"));
}

TEST_F(OpenAiEngineTest, OneMebibyteEvent) {
  const std::string text(1 << 20, 'x');
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(SplitEvery("data: {\"choices\":[{\"delta\":{\"content\":\"" + text +
                                           "\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
                                       64 * 1024)));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(
      got.chunks,
      ElementsAre("text:" + text, absl::StrCat("usage:", kEstimatedPromptTokens, "/1/0 estimated"),
                  "finish:FINISH_REASON_STOP"));
}

TEST_F(OpenAiEngineTest, MalformedJsonEndsWithInternalAfterWhatCame) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(
      SseReply("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
               "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
               "data: {\"choices\":[{\"delta\":{\"cont\n\n"));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::INTERNAL);
  EXPECT_THAT(got.message, HasSubstr("not a JSON object"));
  EXPECT_THAT(got.message, HasSubstr("after 2 text"));
  EXPECT_THAT(got.chunks, ElementsAre("text:Hello", absl::StrCat("usage:", kEstimatedPromptTokens,
                                                                 "/2/0 estimated")));
}

TEST_F(OpenAiEngineTest, ErrorEventMidStreamEndsWithTheUpstreamMessage) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(
      SseReply("data: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n\n"
               "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\","
               "\"code\":null}}\n\n"));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.message, HasSubstr("upstream error: model overloaded"));
  EXPECT_THAT(got.chunks, ElementsAre("text:Par", absl::StrCat("usage:", kEstimatedPromptTokens,
                                                               "/1/0 estimated")));
}

TEST_F(OpenAiEngineTest, NonOkStatusesMapToCanonicalCodesWithTheUpstreamMessage) {
  FakeOpenAiServer upstream;
  const std::string body =
      R"({"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}})";
  upstream.Enqueue(JsonReply(401, body));
  upstream.Enqueue(JsonReply(400, R"({"error":{"message":"bad temperature"}})"));
  upstream.Enqueue(JsonReply(404, R"({"error":{"message":"model not found"}})"));
  upstream.Enqueue(JsonReply(403, R"({"error":{"message":"forbidden"}})"));
  StartService(upstream.url());
  Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(got.message, "upstream HTTP 401: Incorrect API key provided");
  EXPECT_TRUE(got.chunks.empty());
  got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got.message, "upstream HTTP 400: bad temperature");
  got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::NOT_FOUND);
  got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(upstream.requests().size(), 4u);  // None of these is retried.
  EXPECT_EQ(upstream.connections(), 1);       // An error reply keeps the connection alive.
}

TEST_F(OpenAiEngineTest, TooManyRequestsIsRetriedAfterRetryAfter) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(JsonReply(429, R"({"error":{"message":"slow down"}})", "Retry-After: 0\r\n"));
  upstream.Enqueue(JsonReply(503, R"({"error":{"message":"warming up"}})"));
  upstream.Enqueue(SseReply(std::string(testing::kOllamaStream)));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_EQ(got.chunks.front(), "think:Okay.");
  EXPECT_EQ(upstream.requests().size(), 3u);
  EXPECT_EQ(MetricValue("parley_inference_upstream_retries_total"), 2);
}

TEST_F(OpenAiEngineTest, RetryAfterBeyondTheLimitFailsAtOnceWithResourceExhausted) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(
      JsonReply(429, R"({"error":{"message":"quota exceeded"}})", "Retry-After: 3600\r\n"));
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(got.message, "upstream HTTP 429: quota exceeded");
  EXPECT_EQ(upstream.requests().size(), 1u);
}

TEST_F(OpenAiEngineTest, RetriesStopAtTheLimit) {
  FakeOpenAiServer upstream;
  for (int i = 0; i < 3; ++i) {
    upstream.Enqueue(JsonReply(503, R"({"error":{"message":"busy"}})"));
  }
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(got.message, "upstream HTTP 503: busy");
  EXPECT_EQ(upstream.requests().size(), 3u);  // The first try and two retries.
}

TEST_F(OpenAiEngineTest, ServerThatNeverAnswersHitsTheSilenceLimit) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SilentReply());
  OpenAiEngine::Options options = FastOptions();
  options.max_silence = absl::Milliseconds(300);
  StartService(upstream.url(), options);
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(got.message, HasSubstr("no response"));
  EXPECT_TRUE(got.chunks.empty());
  EXPECT_EQ(upstream.requests().size(), 1u);  // Not retried: the upstream may be working on it.
}

TEST_F(OpenAiEngineTest, GrpcDeadlineWhileTheUpstreamIsSilent) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SilentReply());
  StartService(upstream.url());
  const Received got = Generate(absl::Milliseconds(300));
  EXPECT_EQ(got.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(upstream.WaitForDisconnect().has_value());
}

TEST_F(OpenAiEngineTest, ServerThatStopsMidStream) {
  FakeOpenAiServer upstream;
  FakeReply reply = SseReply({"data: {\"choices\":[{\"delta\":{\"content\":\"one\"}}]}\n\n",
                              "data: {\"choices\":[{\"delta\":{\"content\":\" two\"}}]}\n\n"},
                             /*finish_message=*/false);
  reply.then = FakeReply::Then::kClose;
  upstream.Enqueue(reply);
  StartService(upstream.url());
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.message, HasSubstr("before [DONE] after 2 text"));
  EXPECT_THAT(got.chunks, ElementsAre("text:one two", absl::StrCat("usage:", kEstimatedPromptTokens,
                                                                   "/2/0 estimated")));
}

TEST_F(OpenAiEngineTest, ConnectionRefusedIsUnavailable) {
  int closed_port = 0;
  {
    FakeOpenAiServer soon_gone;
    closed_port = soon_gone.port();
  }
  StartService(absl::StrCat("http://127.0.0.1:", closed_port));
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.message, HasSubstr("cannot connect"));
  EXPECT_EQ(MetricValue("parley_inference_upstream_retries_total"), 2);
}

// --- Cancellation, reuse, TLS. ---

TEST_F(OpenAiEngineTest, CancelClosesTheUpstreamConnectionAtOnce) {
  FakeOpenAiServer upstream;
  FakeReply reply = SseReply({"data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n"},
                             /*finish_message=*/false);
  reply.then = FakeReply::Then::kHold;
  upstream.Enqueue(reply);
  // The held reply never ends and silence never times it out, so only the cancel can close the
  // upstream request: the wait below is for that event, its limit only keeps a failure from
  // hanging.
  OpenAiEngine::Options options = FastOptions();
  options.max_silence = absl::Hours(1);
  StartService(upstream.url(), options);

  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, Hi());
  v1::GenerateResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.text_delta().text(), "first");
  context.TryCancel();
  EXPECT_TRUE(upstream.WaitForDisconnect(absl::Seconds(60)).has_value())
      << "the upstream request stayed open after the cancel";
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(OpenAiEngineTest, KeepAliveConnectionIsReused) {
  FakeOpenAiServer upstream;
  upstream.Enqueue(SseReply(std::string(testing::kOpenAiStream)));
  upstream.Enqueue(SseReply(std::string(testing::kVllmReasoningStream)));
  StartService(upstream.url());
  EXPECT_EQ(Generate().code, grpc::StatusCode::OK);
  const Received second = Generate();
  EXPECT_EQ(second.code, grpc::StatusCode::OK) << second.message;
  EXPECT_EQ(second.chunks.front(), "think:The user says hi.");
  EXPECT_EQ(upstream.connections(), 1);
}

TEST_F(OpenAiEngineTest, StaleKeptAliveConnectionIsReplacedTransparently) {
  FakeOpenAiServer upstream;
  FakeReply first = SseReply(std::string(testing::kOllamaStream));
  first.then = FakeReply::Then::kClose;  // The server drops it after the reply.
  upstream.Enqueue(first);
  upstream.Enqueue(SseReply(std::string(testing::kLlamaCppStream)));
  StartService(upstream.url());
  EXPECT_EQ(Generate().code, grpc::StatusCode::OK);
  const Received second = Generate();
  EXPECT_EQ(second.code, grpc::StatusCode::OK) << second.message;
  EXPECT_TRUE(absl::StartsWith(second.chunks.front(), "text:Hello")) << second.chunks.front();
  EXPECT_EQ(MetricValue("parley_inference_upstream_retries_total"), 0);
}

TEST_F(OpenAiEngineTest, TlsUpstreamWithTheGivenCa) {
  const FakeOpenAiServer::TlsFiles certificate = testing::MakeTestCertificate();
  FakeOpenAiServer upstream(certificate);
  upstream.Enqueue(SseReply(std::string(testing::kOpenAiStream)));
  StartService(upstream.url(), FastOptions(), certificate.cert_file);
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::OK) << got.message;
  EXPECT_THAT(got.chunks, ElementsAre("text:Hello! How can I help?", "usage:9/8/0",
                                      "finish:FINISH_REASON_STOP"));
}

TEST_F(OpenAiEngineTest, TlsUpstreamWithAnUntrustedCertificateIsRefused) {
  const FakeOpenAiServer::TlsFiles certificate = testing::MakeTestCertificate();
  FakeOpenAiServer upstream(certificate);
  upstream.Enqueue(SseReply(std::string(testing::kOpenAiStream)));
  StartService(upstream.url());  // System CAs only.
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.message, HasSubstr("TLS handshake"));
  EXPECT_TRUE(upstream.requests().empty());
}

TEST_F(OpenAiEngineTest, TlsHostNameMustMatchTheCertificate) {
  // Trusted, but issued to another name than the "localhost" the engine dials.
  const FakeOpenAiServer::TlsFiles certificate =
      testing::MakeTestCertificate("DNS:models.example.test");
  FakeOpenAiServer upstream(certificate);
  upstream.Enqueue(SseReply(std::string(testing::kOpenAiStream)));
  StartService(upstream.url(), FastOptions(), certificate.cert_file);
  const Received got = Generate();
  EXPECT_EQ(got.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.message, HasSubstr("TLS handshake"));
  EXPECT_TRUE(upstream.requests().empty());
}

}  // namespace
}  // namespace parley::inference
