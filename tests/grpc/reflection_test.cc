// Other services and operators' tools (grpcurl, grpc_cli) discover Parley's
// gRPC APIs through server reflection; this checks the real binaries offer it.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection_subset.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/support/child_process.h"

namespace parley::testing {
namespace {

namespace reflection = ::grpc::reflection::v1alpha;

std::set<std::string> ListServices(const std::string& address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = reflection::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  reflection::ServerReflectionRequest request;
  request.set_list_services("");
  EXPECT_TRUE(stream->Write(request));
  stream->WritesDone();
  std::set<std::string> services;
  reflection::ServerReflectionResponse response;
  while (stream->Read(&response)) {
    for (const reflection::ServiceResponse& service : response.list_services_response().service()) {
      services.insert(service.name());
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  return services;
}

std::set<std::string> StartAndListServices(const std::string& binary, std::vector<std::string> args,
                                           std::unique_ptr<ChildProcess>& process) {
  args.push_back("--listen=127.0.0.1:0");
  args.push_back("--metrics_listen=127.0.0.1:0");
  process = ChildProcess::Start(binary, std::move(args));
  if (process == nullptr) {
    ADD_FAILURE() << "cannot start " << binary;
    return {};
  }
  const std::string address = process->WaitForListening();
  if (address.empty()) {
    ADD_FAILURE() << binary << " never listened";
    return {};
  }
  return ListServices(address);
}

TEST(ServerReflectionTest, InferenceOffersItsServices) {
  std::unique_ptr<ChildProcess> inference;
  const std::set<std::string> services =
      StartAndListServices("parley-inference", {"--engine=simulated"}, inference);
  EXPECT_TRUE(services.contains("parley.inference.v1.InferenceService"));
  EXPECT_TRUE(services.contains("grpc.health.v1.Health"));
}

TEST(ServerReflectionTest, PersistenceOffersItsServices) {
  const std::string data = MakeTempDir();
  std::unique_ptr<ChildProcess> persistence;
  const std::set<std::string> services = StartAndListServices(
      "parley-persistence", {"--store=sqlite:" + data + "/parley.db"}, persistence);
  EXPECT_TRUE(services.contains("parley.persistence.v1.ConversationService"));
  EXPECT_TRUE(services.contains("grpc.health.v1.Health"));
}

}  // namespace
}  // namespace parley::testing
