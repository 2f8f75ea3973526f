#include "edge/clients/inference_client.h"

#include <utility>

#include "absl/time/clock.h"
#include "edge/clients/grpc_status.h"

namespace parley::edge {

InferenceClient::InferenceClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(inference_pb::InferenceService::NewStub(channel_)) {}

std::shared_ptr<GenerateStream> InferenceClient::Generate(inference_pb::GenerateRequest request,
                                                          absl::Duration deadline,
                                                          const common::TraceContext& trace,
                                                          GenerateStream::Callbacks callbacks) {
  auto* async = stub_->async();
  auto stream = std::make_shared<GenerateStream>(
      [async](grpc::ClientContext* context, const inference_pb::GenerateRequest* request,
              grpc::ClientReadReactor<inference_pb::GenerateResponse>* reactor) {
        async->Generate(context, request, reactor);
      },
      std::move(callbacks));
  stream->Start(std::move(request), deadline, trace);
  return stream;
}

void InferenceClient::DefaultModel(std::function<void(absl::StatusOr<std::string>)> done) {
  {
    absl::MutexLock lock(&mutex_);
    if (!default_model_.empty()) {
      done(default_model_);
      return;
    }
  }
  struct Call {
    grpc::ClientContext context;
    inference_pb::ListModelsRequest request;
    inference_pb::ListModelsResponse response;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  stub_->async()->ListModels(&call->context, &call->request, &call->response,
                             [this, call, done = std::move(done)](grpc::Status status) {
                               if (!status.ok()) {
                                 done(ToAbslStatus(status));
                                 return;
                               }
                               std::string name;
                               for (const inference_pb::Model& model : call->response.models()) {
                                 if (model.is_default() || name.empty()) {
                                   name = model.name();
                                 }
                                 if (model.is_default()) {
                                   break;
                                 }
                               }
                               {
                                 absl::MutexLock lock(&mutex_);
                                 default_model_ = name;
                               }
                               done(std::move(name));
                             });
}

}  // namespace parley::edge
