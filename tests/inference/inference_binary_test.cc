#include <signal.h>

#include <fstream>
#include <string>
#include <vector>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"
#include "tests/support/child_process.h"

namespace parley::inference {
namespace {

// Asks grpc.health.v1 for the overall status; returns the raw response bytes
// ("\x08\x01" is SERVING). Spares the test a copy of health.proto.
std::string CheckHealth(grpc::Channel& channel) {
  grpc::ClientContext context;
  // An empty HealthCheckRequest serializes to zero bytes, but the buffer must hold a slice.
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  const grpc::internal::RpcMethod method("/grpc.health.v1.Health/Check",
                                         grpc::internal::RpcMethod::NORMAL_RPC);
  const grpc::Status status =
      grpc::internal::BlockingUnaryCall(&channel, method, &context, request, &response);
  if (!status.ok()) {
    return "error: " + status.error_message();
  }
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

TEST(InferenceBinaryTest, ServesHealthAndStreamsThenStopsCleanlyOnSigterm) {
  auto process = parley::testing::ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
       "--sim_ttft_ms=0", "--sim_tokens_per_second=0", "--sim_max_tokens=4"});
  ASSERT_NE(process, nullptr);
  const std::string listen = process->WaitForListening();
  ASSERT_FALSE(listen.empty());
  EXPECT_FALSE(process->WaitForListening("metrics_listen").empty());
  auto channel = grpc::CreateChannel(listen, grpc::InsecureChannelCredentials());

  EXPECT_EQ(CheckHealth(*channel), std::string("\x08\x01"));

  v1::GenerateRequest request;
  v1::ChatMessage* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("hello");
  grpc::ClientContext context;
  auto reader = v1::InferenceService::NewStub(channel)->Generate(&context, request);
  int deltas = 0;
  int completion_tokens = 0;
  v1::GenerateResponse chunk;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&chunk)) {
    deltas += chunk.has_text_delta() ? 1 : 0;
    if (chunk.has_usage()) {
      completion_tokens = chunk.usage().completion_tokens();
    }
    if (chunk.has_finish()) {
      reason = chunk.finish().reason();
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  // Four tokens (--sim_max_tokens), in at most four chunks: deltas that wait behind a write go
  // out together.
  EXPECT_EQ(completion_tokens, 4);
  EXPECT_GE(deltas, 1);
  EXPECT_LE(deltas, 4);
  EXPECT_EQ(reason, v1::FINISH_REASON_LENGTH);

  process->Signal(SIGTERM);
  EXPECT_EQ(process->Wait(), 0);
}

TEST(InferenceBinaryTest, QuickStartFlagsRouteTheUpstreamModelAndKeepSimulated) {
  // Nothing listens on the upstream; ListModels does not need it.
  auto process = parley::testing::ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=openai",
       "--upstream_url=http://127.0.0.1:9", "--upstream_model=llama-3.1-8b"});
  ASSERT_NE(process, nullptr);
  const std::string listen = process->WaitForListening();
  ASSERT_FALSE(listen.empty());
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  ASSERT_TRUE(
      v1::InferenceService::NewStub(grpc::CreateChannel(listen, grpc::InsecureChannelCredentials()))
          ->ListModels(&context, {}, &response)
          .ok());
  ASSERT_EQ(response.models_size(), 2);
  EXPECT_EQ(response.models(0).name(), "llama-3.1-8b");
  EXPECT_EQ(response.models(0).engine(), "openai");
  EXPECT_TRUE(response.models(0).is_default());
  EXPECT_EQ(response.models(1).name(), "simulated");
  EXPECT_FALSE(response.models(1).is_default());
  process->Signal(SIGTERM);
  EXPECT_EQ(process->Wait(), 0);
}

TEST(InferenceBinaryTest, BrokenModelsConfigStopsAtStartup) {
  const std::string path = parley::testing::MakeTempDir() + "/models.json";
  std::ofstream(path) << R"({"models": [{"name": "x", "engine": "openai"}]})";
  auto process = parley::testing::ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--models_config=" + path});
  ASSERT_NE(process, nullptr);
  EXPECT_NE(process->Wait(), 0);
  bool explained = false;
  for (const std::string& line : process->Lines()) {
    explained = explained || line.find("base_url") != std::string::npos;
  }
  EXPECT_TRUE(explained);
}

// Starts parley-inference with `flags` where the address `taken` is held by
// another server; expects it to say which address is in use and exit 1.
void ExpectRefusedAddress(const std::vector<std::string>& flags, const std::string& taken) {
  auto second = parley::testing::ChildProcess::Start("parley-inference", flags);
  ASSERT_NE(second, nullptr);
  // Its first log line: the refusal, or (the fault) "listening" beside the first server.
  const std::string line = second->WaitForLine("\"level\"");
  EXPECT_NE(line.find(taken + " is already in use"), std::string::npos) << line;
  if (line.find("\"listening\"") != std::string::npos) {
    second->Signal(SIGTERM);
  }
  EXPECT_EQ(second->Wait(), 1) << line;
}

TEST(InferenceBinaryTest, ASecondServerOnATakenAddressNamesItAndExitsOne) {
  auto first = parley::testing::ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated"});
  ASSERT_NE(first, nullptr);
  const std::string listen = first->WaitForListening();
  const std::string metrics = first->WaitForListening("metrics_listen");
  ASSERT_FALSE(listen.empty());
  ExpectRefusedAddress({"--listen=" + listen, "--metrics_listen=127.0.0.1:0", "--engine=simulated"},
                       listen);
  ExpectRefusedAddress(
      {"--listen=127.0.0.1:0", "--metrics_listen=" + metrics, "--engine=simulated"}, metrics);

  // The first server still serves.
  auto channel = grpc::CreateChannel(listen, grpc::InsecureChannelCredentials());
  EXPECT_EQ(CheckHealth(*channel), std::string("\x08\x01"));
  first->Signal(SIGTERM);
  EXPECT_EQ(first->Wait(), 0);
}

}  // namespace
}  // namespace parley::inference
