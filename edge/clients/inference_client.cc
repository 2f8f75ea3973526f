#include "edge/clients/inference_client.h"

#include <utility>

#include "absl/time/clock.h"
#include "edge/clients/grpc_status.h"

namespace parley::edge {

GenerateStream::GenerateStream(inference_pb::InferenceService::Stub* stub, Callbacks callbacks)
    : stub_(stub), callbacks_(std::move(callbacks)) {}

void GenerateStream::Start(inference_pb::GenerateRequest request, absl::Duration deadline,
                           const common::TraceContext& trace) {
  self_ = shared_from_this();
  request_ = std::move(request);
  context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  common::AttachTraceContext(context_, trace);
  stub_->async()->Generate(&context_, &request_, this);
  AddHold();
  {
    absl::MutexLock lock(&mutex_);
    read_pending_ = true;
  }
  StartRead(&response_);
  StartCall();
}

void GenerateStream::ReadNext() {
  {
    absl::MutexLock lock(&mutex_);
    if (cancelled_ || hold_released_ || read_pending_) {
      return;
    }
    read_pending_ = true;
  }
  StartRead(&response_);
}

void GenerateStream::Cancel() {
  bool release = false;
  {
    absl::MutexLock lock(&mutex_);
    if (cancelled_) {
      return;
    }
    cancelled_ = true;
    // With a read pending, its failure releases the hold; otherwise do it here.
    if (!read_pending_ && !hold_released_) {
      hold_released_ = true;
      release = true;
    }
  }
  context_.TryCancel();
  if (release) {
    RemoveHold();
  }
}

void GenerateStream::OnReadDone(bool ok) {
  if (!ok) {
    bool release = false;
    {
      absl::MutexLock lock(&mutex_);
      read_pending_ = false;
      if (!hold_released_) {
        hold_released_ = true;
        release = true;
      }
    }
    if (release) {
      RemoveHold();
    }
    return;
  }
  inference_pb::GenerateResponse chunk = std::move(response_);
  response_.Clear();
  bool cancelled = false;
  {
    absl::MutexLock lock(&mutex_);
    read_pending_ = false;
    // A chunk that raced with Cancel() is dropped; nobody will ask for the next one.
    cancelled = cancelled_ && !hold_released_;
    if (cancelled) {
      hold_released_ = true;
    }
  }
  if (cancelled) {
    RemoveHold();
    return;
  }
  callbacks_.on_chunk(std::move(chunk));
}

void GenerateStream::OnDone(const grpc::Status& status) {
  auto on_done = std::move(callbacks_.on_done);
  callbacks_ = {};
  if (on_done) {
    on_done(ToAbslStatus(status));
  }
  // Last line: may destroy this.
  self_.reset();
}

InferenceClient::InferenceClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(inference_pb::InferenceService::NewStub(channel_)) {}

std::shared_ptr<GenerateStream> InferenceClient::Generate(inference_pb::GenerateRequest request,
                                                          absl::Duration deadline,
                                                          const common::TraceContext& trace,
                                                          GenerateStream::Callbacks callbacks) {
  auto stream = std::make_shared<GenerateStream>(stub_.get(), std::move(callbacks));
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
