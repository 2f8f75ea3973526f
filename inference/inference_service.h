#pragma once

#include "grpcpp/support/server_callback.h"
#include "inference/metrics.h"
#include "inference/model_registry.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"

namespace parley::inference {

// The gRPC face of the service (callback API). Each Generate call is one
// reactor that pulls a chunk from the model's engine, writes it, and pulls the
// next only when the write completed. It never blocks gRPC threads. The
// registry and metrics must outlive the service.
class InferenceService final : public v1::InferenceService::CallbackService {
 public:
  InferenceService(const ModelRegistry& models, InferenceMetrics& metrics)
      : models_(models), metrics_(metrics) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

 private:
  const ModelRegistry& models_;
  InferenceMetrics& metrics_;
};

}  // namespace parley::inference
