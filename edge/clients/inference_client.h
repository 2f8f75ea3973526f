#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/read_stream.h"
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
  explicit InferenceClient(std::shared_ptr<grpc::Channel> channel);

  std::shared_ptr<GenerateStream> Generate(inference_pb::GenerateRequest request,
                                           absl::Duration deadline,
                                           const common::TraceContext& trace,
                                           GenerateStream::Callbacks callbacks);

  // Name of the model the service uses when a request names none.
  void DefaultModel(std::function<void(absl::StatusOr<std::string>)> done);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference_pb::InferenceService::Stub> stub_;
  absl::Mutex mutex_;
  // Learned once from ListModels; the default does not change while a service runs.
  std::string default_model_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::edge
