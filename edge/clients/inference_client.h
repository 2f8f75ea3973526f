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
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"

namespace parley::edge {

namespace inference_pb = ::parley::inference::v1;

// One Generate call. It reads one chunk at a time: after `on_chunk` the next
// read starts only when the consumer calls ReadNext(), so a consumer that is
// not ready (slow socket) stops pulling and gRPC flow control reaches the
// engine. Callbacks run on gRPC threads.
class GenerateStream final : public grpc::ClientReadReactor<inference_pb::GenerateResponse>,
                             public std::enable_shared_from_this<GenerateStream> {
 public:
  struct Callbacks {
    std::function<void(inference_pb::GenerateResponse)> on_chunk;
    std::function<void(absl::Status)> on_done;
  };

  // Use InferenceClient::Generate.
  GenerateStream(inference_pb::InferenceService::Stub* stub, Callbacks callbacks);

  void ReadNext();
  // Stops the engine; on_done follows with CANCELLED. Safe to repeat.
  void Cancel();

  void Start(inference_pb::GenerateRequest request, absl::Duration deadline,
             const common::TraceContext& trace);

 private:
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  inference_pb::InferenceService::Stub* const stub_;
  Callbacks callbacks_;
  grpc::ClientContext context_;
  inference_pb::GenerateRequest request_;
  inference_pb::GenerateResponse response_;

  absl::Mutex mutex_;
  bool read_pending_ ABSL_GUARDED_BY(mutex_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mutex_) = false;
  // The hold keeps OnDone away between a chunk and the consumer's ReadNext().
  bool hold_released_ ABSL_GUARDED_BY(mutex_) = false;
  std::shared_ptr<GenerateStream> self_;
};

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
