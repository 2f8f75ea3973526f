#include "edge/clients/inference_client.h"

#include <utility>

#include "absl/algorithm/container.h"
#include "absl/time/clock.h"
#include "edge/clients/grpc_status.h"

namespace parley::edge {

InferenceClient::InferenceClient(std::shared_ptr<grpc::Channel> channel,
                                 absl::Duration ready_timeout)
    : channel_(std::move(channel)),
      stub_(inference_pb::InferenceService::NewStub(channel_)),
      readiness_(std::make_unique<BackendReadiness>(channel_, "inference", ready_timeout)) {}

std::shared_ptr<GenerateStream> InferenceClient::Generate(inference_pb::GenerateRequest request,
                                                          absl::Duration deadline,
                                                          const common::TraceContext& trace,
                                                          GenerateStream::Callbacks callbacks) {
  // Usage and finish then come on the reply's last message rather than two of their own.
  request.set_accepts_end(true);
  auto* async = stub_->async();
  auto stream = std::make_shared<GenerateStream>(
      [async](grpc::ClientContext* context, const inference_pb::GenerateRequest* request,
              grpc::ClientReadReactor<inference_pb::GenerateResponse>* reactor) {
        async->Generate(context, request, reactor);
      },
      std::move(callbacks));
  stream->Start(std::move(request), deadline, trace, readiness_.get());
  return stream;
}

void InferenceClient::DefaultModel(std::function<void(absl::StatusOr<std::string>)> done) {
  ResolveModel("", UnknownModel::kRefuse, std::move(done));
}

void InferenceClient::ResolveModel(std::string requested, UnknownModel unknown,
                                   std::function<void(absl::StatusOr<std::string>)> done) {
  if (!requested.empty() && unknown == UnknownModel::kRefuse) {
    // The service itself refuses a model it does not know, with the name the client used.
    return done(std::move(requested));
  }
  LoadModels([requested = std::move(requested),
              done = std::move(done)](absl::StatusOr<Models> models) mutable {
    if (!models.ok()) {
      return done(models.status());
    }
    done(Choose(*models, requested));
  });
}

std::string InferenceClient::Choose(const Models& models, const std::string& requested) {
  return !requested.empty() && absl::c_linear_search(models.names, requested)
             ? requested
             : models.default_model;
}

std::optional<std::string> InferenceClient::KnownModel(const std::string& requested,
                                                       UnknownModel unknown) {
  if (!requested.empty() && unknown == UnknownModel::kRefuse) {
    return requested;
  }
  absl::MutexLock lock(&mutex_);
  if (!models_.has_value()) {
    return std::nullopt;
  }
  return Choose(*models_, requested);
}

void InferenceClient::ListModels(
    std::function<void(absl::StatusOr<std::vector<std::string>>)> done) {
  LoadModels([done = std::move(done)](absl::StatusOr<Models> models) {
    if (!models.ok()) {
      return done(models.status());
    }
    done(std::move(models->names));
  });
}

void InferenceClient::LoadModels(std::function<void(absl::StatusOr<Models>)> done) {
  {
    absl::MutexLock lock(&mutex_);
    if (models_.has_value()) {
      return done(*models_);
    }
  }
  readiness_->WhenReady([this, done = std::move(done)](absl::Status ready) mutable {
    if (!ready.ok()) {
      return done(std::move(ready));
    }
    CallListModels(std::move(done));
  });
}

void InferenceClient::CallListModels(std::function<void(absl::StatusOr<Models>)> done) {
  struct Call {
    grpc::ClientContext context;
    inference_pb::ListModelsRequest request;
    inference_pb::ListModelsResponse response;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  // Connected a moment ago; a connection lost since then is waited for, within the deadline.
  call->context.set_wait_for_ready(true);
  stub_->async()->ListModels(&call->context, &call->request, &call->response,
                             [this, call, done = std::move(done)](grpc::Status status) {
                               if (!status.ok()) {
                                 return done(ToAbslStatus(status));
                               }
                               Models models;
                               // The first model marked default, else the first one.
                               bool marked = false;
                               for (const inference_pb::Model& model : call->response.models()) {
                                 if (models.names.empty() || (model.is_default() && !marked)) {
                                   models.default_model = model.name();
                                   marked = model.is_default();
                                 }
                                 models.names.push_back(model.name());
                               }
                               {
                                 absl::MutexLock lock(&mutex_);
                                 models_ = models;
                               }
                               done(std::move(models));
                             });
}

}  // namespace parley::edge
