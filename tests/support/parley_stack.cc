#include "tests/support/parley_stack.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/ws_client.h"

namespace parley::testing {
namespace {

std::vector<std::string> Concat(std::vector<std::string> base,
                                const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

}  // namespace

std::unique_ptr<ParleyStack> ParleyStack::Start(StackOptions options) {
  std::unique_ptr<ParleyStack> stack(new ParleyStack());
  stack->data_dir_ = MakeTempDir();
  stack->persistence_ = ChildProcess::Start(
      "parley-persistence", Concat({"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                                    absl::StrCat("--store=sqlite:", stack->database_path())},
                                   options.persistence_flags));
  stack->inference_ = ChildProcess::Start(
      "parley-inference",
      Concat({"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated"},
             options.inference_flags));
  if (stack->persistence_ == nullptr || stack->inference_ == nullptr) {
    ADD_FAILURE() << "cannot start persistence or inference";
    return nullptr;
  }
  stack->persistence_address_ = stack->persistence_->WaitForListening();
  stack->inference_address_ = stack->inference_->WaitForListening();
  if (stack->persistence_address_.empty() || stack->inference_address_.empty()) {
    ADD_FAILURE() << "persistence or inference did not start listening";
    return nullptr;
  }
  stack->edge_ = stack->StartEdge(options.edge_flags);
  if (stack->edge_ == nullptr) {
    return nullptr;
  }
  stack->edge_address_ = stack->edge_->WaitForListening();
  if (stack->edge_address_.empty()) {
    ADD_FAILURE() << "the edge did not start listening";
    return nullptr;
  }
  return stack;
}

std::unique_ptr<ChildProcess> ParleyStack::StartEdge(
    const std::vector<std::string>& extra_flags) const {
  std::unique_ptr<ChildProcess> edge = ChildProcess::Start(
      "parley-edge",
      Concat({"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address_),
              absl::StrCat("--persistence=", persistence_address_), "--allow_anonymous"},
             extra_flags));
  if (edge == nullptr) {
    ADD_FAILURE() << "cannot start parley-edge";
  }
  return edge;
}

int ParleyStack::PersistenceCallsStarted(const std::string& method) {
  absl::StatusOr<HttpResponse> metrics =
      HttpGet(persistence_->WaitForListening("metrics_listen"), "/metrics");
  if (!metrics.ok()) {
    return -1;
  }
  int started = 0;
  for (absl::string_view line : absl::StrSplit(metrics->body, '\n')) {
    if (absl::StartsWith(line, "parley_persistence_grpc_server_started_total{") &&
        absl::StrContains(line, absl::StrCat("grpc_method=\"", method, "\""))) {
      started += std::stoi(std::string(line.substr(line.rfind(' ') + 1)));
    }
  }
  return started;
}

}  // namespace parley::testing
