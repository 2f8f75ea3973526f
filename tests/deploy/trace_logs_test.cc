// A trace id sent in gRPC metadata shows up in the backends' own JSON logs, so
// one turn can be followed across services by grepping for it.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/trace_context.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/deploy/run_command.h"
#include "tests/support/child_process.h"

namespace parley::testing {
namespace {

constexpr char kTraceparent[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
constexpr char kTraceId[] = "0af7651916cd43dd8448eb211c80319c";

std::unique_ptr<grpc::ClientContext> TracedContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  common::AttachTraceContext(*context, *common::ParseTraceparent(kTraceparent));
  return context;
}

TEST(TraceLogsTest, InferenceLogsTheCallersTraceId) {
  std::unique_ptr<ChildProcess> inference = ChildProcess::Start(
      "parley-inference",
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated"});
  ASSERT_NE(inference, nullptr);
  const std::string address = inference->WaitForListening();
  ASSERT_NE(address, "");
  auto stub = inference::v1::InferenceService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::unique_ptr<grpc::ClientContext> context = TracedContext();
  inference::v1::ListModelsResponse response;
  ASSERT_TRUE(stub->ListModels(context.get(), inference::v1::ListModelsRequest(), &response).ok());
  // The line is written before the status goes out, so it is there already
  // or arrives on the pipe right behind it.
  const std::string line = inference->WaitForLine(kTraceId);
  EXPECT_NE(line.find(R"("service":"inference")"), std::string::npos)
      << absl::StrJoin(inference->Lines(), "\n");
  EXPECT_NE(line.find(R"("grpc_method":"/parley.inference.v1.InferenceService/ListModels")"),
            std::string::npos)
      << absl::StrJoin(inference->Lines(), "\n");
}

TEST(TraceLogsTest, PersistenceLogsTheCallersTraceId) {
  const std::string dir = MakeTempDir();
  std::unique_ptr<ChildProcess> persistence = ChildProcess::Start(
      "parley-persistence", {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                             absl::StrCat("--store=sqlite:", dir, "/parley.db")});
  ASSERT_NE(persistence, nullptr);
  const std::string address = persistence->WaitForListening();
  ASSERT_NE(address, "");
  auto stub = persistence::v1::ConversationService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::unique_ptr<grpc::ClientContext> context = TracedContext();
  persistence::v1::ListConversationsRequest request;
  request.set_user_id("trace-user");
  persistence::v1::ListConversationsResponse response;
  ASSERT_TRUE(stub->ListConversations(context.get(), request, &response).ok());
  const std::string line = persistence->WaitForLine(kTraceId);
  EXPECT_NE(line.find(R"("service":"persistence")"), std::string::npos)
      << absl::StrJoin(persistence->Lines(), "\n");
  EXPECT_NE(line.find(R"("grpc_code":"OK")"), std::string::npos)
      << absl::StrJoin(persistence->Lines(), "\n");
  RunCommand("rm -rf " + ShellQuote(dir));
}

}  // namespace
}  // namespace parley::testing
