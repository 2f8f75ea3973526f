#include "inference/inference_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "common/grpc_server.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "inference/engines/simulated_engine.h"
#include "inference/io_threads.h"
#include "tests/inference/chunks.h"

namespace parley::inference {
namespace {

// Wraps an engine and tells the test when a generation was cancelled.
class CancelObservingEngine : public Engine {
 public:
  explicit CancelObservingEngine(std::shared_ptr<Engine> inner) : inner_(std::move(inner)) {}

  std::shared_ptr<Generation> Start(const v1::GenerateRequest& request,
                                    absl::Time deadline) override {
    return std::make_shared<Observed>(inner_->Start(request, deadline), cancelled_);
  }

  bool WaitForCancel() { return cancelled_->WaitForNotificationWithTimeout(absl::Seconds(30)); }

 private:
  class Observed : public Generation {
   public:
    Observed(std::shared_ptr<Generation> inner, std::shared_ptr<absl::Notification> cancelled)
        : inner_(std::move(inner)), cancelled_(std::move(cancelled)) {}
    void Next(StepCallback callback) override { inner_->Next(std::move(callback)); }
    void Cancel() override {
      inner_->Cancel();
      if (!cancelled_->HasBeenNotified()) {
        cancelled_->Notify();
      }
    }

   private:
    std::shared_ptr<Generation> inner_;
    std::shared_ptr<absl::Notification> cancelled_;
  };

  std::shared_ptr<Engine> inner_;
  std::shared_ptr<absl::Notification> cancelled_ = std::make_shared<absl::Notification>();
};

// Plays a fixed list of steps, each delivered on the io context as an engine must.
class ScriptedEngine : public Engine {
 public:
  ScriptedEngine(boost::asio::io_context& io, std::vector<Step> steps)
      : io_(io), steps_(std::move(steps)) {}

  std::shared_ptr<Generation> Start(const v1::GenerateRequest& /*request*/,
                                    absl::Time /*deadline*/) override {
    return std::make_shared<Played>(io_, steps_);
  }

 private:
  class Played : public Generation {
   public:
    Played(boost::asio::io_context& io, std::vector<Step> steps)
        : io_(io), steps_(std::move(steps)) {}
    void Next(StepCallback callback) override {
      boost::asio::post(io_, [this, callback = std::move(callback)] {
        callback(next_ < steps_.size() ? steps_[next_++] : Step::End(absl::OkStatus()));
      });
    }
    void Cancel() override {}

   private:
    boost::asio::io_context& io_;
    const std::vector<Step> steps_;
    size_t next_ = 0;
  };

  boost::asio::io_context& io_;
  const std::vector<Step> steps_;
};

using testing::TextChunk;
using testing::UsageChunk;

v1::Model ModelInfo(const std::string& name, bool is_default = false) {
  v1::Model model;
  model.set_name(name);
  model.set_engine("simulated");
  model.set_is_default(is_default);
  return model;
}

class InferenceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SimulatedEngine::Options fast;
    fast.time_to_first_token = absl::ZeroDuration();
    fast.tokens_per_second = 0;
    fast.max_tokens = 1000;
    models_.Add(ModelInfo("simulated", /*is_default=*/true),
                std::make_shared<SimulatedEngine>(io_.context(), fast));

    SimulatedEngine::Options trickle = fast;
    trickle.tokens_per_second = 0.5;  // Long enough that the test cancels mid-stream.
    trickle_ = std::make_shared<CancelObservingEngine>(
        std::make_shared<SimulatedEngine>(io_.context(), trickle));
    models_.Add(ModelInfo("trickle"), trickle_);

    SimulatedEngine::Options stalled = fast;
    stalled.time_to_first_token = absl::Hours(1);
    models_.Add(ModelInfo("stalled"), std::make_shared<SimulatedEngine>(io_.context(), stalled));

    models_.Add(ModelInfo("failing"),
                std::make_shared<ScriptedEngine>(
                    io_.context(),
                    std::vector<Step>{Step::Chunk(TextChunk("par")), Step::Chunk(UsageChunk(1)),
                                      Step::End(absl::UnavailableError("gone"))}));

    service_ = std::make_unique<InferenceService>(models_, metrics_);
    common::GrpcServerOptions options;
    options.listen = "127.0.0.1:0";
    options.services = {service_.get()};
    absl::StatusOr<common::RunningGrpcServer> server = common::StartGrpcServer(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::InferenceService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_.port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_.server) {
      server_.server->Shutdown();
    }
  }

  static v1::GenerateRequest Prompt(const std::string& model, const std::string& text) {
    v1::GenerateRequest request;
    request.set_model(model);
    v1::ChatMessage* user = request.add_messages();
    user->set_role(v1::ROLE_USER);
    user->set_content(text);
    return request;
  }

  // Every message of a stream that must end OK.
  std::vector<v1::GenerateResponse> GenerateAll(const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    std::vector<v1::GenerateResponse> chunks;
    v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) {
      chunks.push_back(chunk);
    }
    const grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return chunks;
  }

  IoThreads io_{2};
  prometheus::Registry registry_;
  InferenceMetrics metrics_{registry_};
  ModelRegistry models_;
  std::shared_ptr<CancelObservingEngine> trickle_;
  std::unique_ptr<InferenceService> service_;
  common::RunningGrpcServer server_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

TEST_F(InferenceServiceTest, StreamsTokensInOrderThenUsageAndFinish) {
  const v1::GenerateRequest request = Prompt("simulated", "What is a river?");
  const std::vector<v1::GenerateResponse> chunks = GenerateAll(request);
  ASSERT_GE(chunks.size(), 3u);
  std::string text;
  for (size_t i = 0; i + 2 < chunks.size(); ++i) {
    ASSERT_TRUE(chunks[i].has_text_delta()) << i;
    text += chunks[i].text_delta().text();
  }
  EXPECT_EQ(text, SimulatedEngine::NaturalReply(request));
  ASSERT_TRUE(chunks[chunks.size() - 2].has_usage());
  // The engine's count (one token per word), however its deltas were grouped into chunks: the
  // deltas that wait behind a write in flight go out together.
  const std::vector<absl::string_view> words =
      absl::StrSplit(text, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty());
  EXPECT_EQ(chunks[chunks.size() - 2].usage().completion_tokens(), static_cast<int>(words.size()));
  EXPECT_LE(chunks.size() - 2, words.size());
  ASSERT_TRUE(chunks.back().has_finish());
  EXPECT_EQ(chunks.back().finish().reason(), v1::FINISH_REASON_STOP);
}

TEST_F(InferenceServiceTest, ACallerThatAcceptsTheEndGetsUsageAndFinishOnTheLastMessage) {
  v1::GenerateRequest request = Prompt("simulated", "What is a river?");
  request.set_accepts_end(true);
  const std::vector<v1::GenerateResponse> chunks = GenerateAll(request);
  ASSERT_FALSE(chunks.empty());
  std::string text;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_FALSE(chunks[i].has_usage() || chunks[i].has_finish()) << i;
    EXPECT_EQ(chunks[i].has_end(), i + 1 == chunks.size()) << i;
    text += chunks[i].text_delta().text();
  }
  EXPECT_EQ(text, SimulatedEngine::NaturalReply(request));
  const v1::StreamEnd& end = chunks.back().end();
  const std::vector<absl::string_view> words =
      absl::StrSplit(text, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty());
  EXPECT_EQ(end.usage().completion_tokens(), static_cast<int>(words.size()));
  EXPECT_EQ(end.finish().reason(), v1::FINISH_REASON_STOP);
}

TEST_F(InferenceServiceTest, AFailedStreamEndsWithItsUsageThenTheErrorInEitherForm) {
  for (const bool accepts_end : {false, true}) {
    grpc::ClientContext context;
    v1::GenerateRequest request = Prompt("failing", "hi");
    request.set_accepts_end(accepts_end);
    auto reader = stub_->Generate(&context, request);
    std::string text;
    int completion_tokens = -1;
    v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) {
      text += chunk.text_delta().text();
      EXPECT_FALSE(chunk.has_finish() || chunk.end().has_finish()) << accepts_end;
      EXPECT_EQ(chunk.has_end(), accepts_end && chunk.end().has_usage());
      if (chunk.has_usage()) {
        completion_tokens = chunk.usage().completion_tokens();
      } else if (chunk.end().has_usage()) {
        completion_tokens = chunk.end().usage().completion_tokens();
      }
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE) << accepts_end;
    EXPECT_EQ(text, "par") << accepts_end;
    EXPECT_EQ(completion_tokens, 1) << accepts_end;
  }
}

TEST_F(InferenceServiceTest, EmptyModelSelectsTheDefault) {
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, Prompt("", "hi"));
  v1::GenerateResponse chunk;
  std::string text;
  while (reader->Read(&chunk)) {
    text += chunk.text_delta().text();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(text, SimulatedEngine::NaturalReply(Prompt("", "hi")));
}

TEST_F(InferenceServiceTest, ClientCancelStopsTheEngine) {
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, Prompt("trickle", "go slowly"));
  v1::GenerateResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));  // The first token comes at once; the next in 2 s.
  ASSERT_TRUE(chunk.has_text_delta());
  context.TryCancel();
  EXPECT_TRUE(trickle_->WaitForCancel());
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(InferenceServiceTest, DeadlineEndsTheStreamWithDeadlineExceeded) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  auto reader = stub_->Generate(&context, Prompt("stalled", "anyone?"));
  v1::GenerateResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(InferenceServiceTest, UnknownModelIsNotFound) {
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, Prompt("gpt-nope", "hi"));
  v1::GenerateResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("gpt-nope"), std::string::npos);
}

TEST_F(InferenceServiceTest, EmptyMessagesAreInvalid) {
  grpc::ClientContext context;
  v1::GenerateRequest request;
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(InferenceServiceTest, ListModelsNamesEveryModelAndTheDefault) {
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  ASSERT_TRUE(stub_->ListModels(&context, {}, &response).ok());
  ASSERT_EQ(response.models_size(), 4);
  EXPECT_EQ(response.models(0).name(), "simulated");
  EXPECT_TRUE(response.models(0).is_default());
  EXPECT_EQ(response.models(0).engine(), "simulated");
  EXPECT_EQ(response.models(1).name(), "trickle");
  EXPECT_FALSE(response.models(1).is_default());
  EXPECT_EQ(response.models(2).name(), "stalled");
  EXPECT_EQ(response.models(3).name(), "failing");
}

}  // namespace
}  // namespace parley::inference
