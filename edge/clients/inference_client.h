#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/backend_readiness.h"
#include "edge/clients/read_stream.h"
#include "edge/protocol/messages.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"

namespace parley::edge {

namespace inference_pb = ::parley::inference::v1;

// One Generate call, read a chunk at a time (see ReadStream).
using GenerateStream = ReadStream<inference_pb::GenerateRequest, inference_pb::GenerateResponse>;

// Asynchronous client of parley.inference.v1.InferenceService.
class InferenceClient {
 public:
  // Every call first waits up to `ready_timeout` for the channel to connect (BackendReadiness).
  explicit InferenceClient(std::shared_ptr<grpc::Channel> channel,
                           absl::Duration ready_timeout = absl::Seconds(5));

  std::shared_ptr<GenerateStream> Generate(inference_pb::GenerateRequest request,
                                           absl::Duration deadline,
                                           const common::TraceContext& trace,
                                           GenerateStream::Callbacks callbacks);

  // Name of the model the service uses when a request names none.
  void DefaultModel(std::function<void(absl::StatusOr<std::string>)> done);

  // The model that answers a request for `requested`: the default when it is empty, and, with
  // `kUseDefault`, also when the service does not know it.
  void ResolveModel(std::string requested, UnknownModel unknown,
                    std::function<void(absl::StatusOr<std::string>)> done);

  // What ResolveModel would answer, when it can answer without a call: a model taken as the
  // client named it, or one resolved from the models already learned. nullopt otherwise.
  std::optional<std::string> KnownModel(const std::string& requested, UnknownModel unknown);

  // The public model names the service routes (learned once).
  void ListModels(std::function<void(absl::StatusOr<std::vector<std::string>>)> done);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference_pb::InferenceService::Stub> stub_;
  absl::Mutex mutex_;
  struct Models {
    std::string default_model;
    std::vector<std::string> names;
  };
  // Calls `done` with the service's models, learned once: they do not change while it runs.
  void LoadModels(std::function<void(absl::StatusOr<Models>)> done);
  void CallListModels(std::function<void(absl::StatusOr<Models>)> done);
  // The model that answers `requested` among `models`: itself, or the default for an empty or
  // unknown name.
  static std::string Choose(const Models& models, const std::string& requested);

  // Empty until learned from ListModels.
  std::optional<Models> models_ ABSL_GUARDED_BY(mutex_);
  // Last: its thread may call back into the members above until it is destroyed.
  std::unique_ptr<BackendReadiness> readiness_;
};

}  // namespace parley::edge
