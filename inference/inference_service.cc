#include "inference/inference_service.h"

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace parley::inference {
namespace {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

std::string OutcomeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return "complete";
    case absl::StatusCode::kCancelled:
      return "cancelled";
    case absl::StatusCode::kDeadlineExceeded:
      return "deadline_exceeded";
    default:
      return "error";
  }
}

// Ends a call that was refused before any engine work started.
class RefusedReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit RefusedReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// One Generate call. Exactly one of these is in flight at any time: an engine
// Next(), a StartWrite(), or the Finish(); so the engine produces the next chunk
// only after gRPC accepted the previous one, and the reactor is never deleted
// while the engine still holds its callback.
class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(const ModelRoute& route, const v1::GenerateRequest& request, absl::Time deadline,
                  InferenceMetrics& metrics)
      : model_(route.info.name()), metrics_(metrics), started_(absl::Now()) {
    metrics_.streams_active().Increment();
    generation_ = route.engine->Start(request, deadline);
    RequestNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The call is gone (cancelled or the transport broke): stop the engine.
      generation_->Cancel();
      Conclude(absl::CancelledError("stream closed by the client"));
      return;
    }
    RequestNext();
  }

  // Runs for client cancels and for deadline expiry alike; the outstanding
  // Next() (if any) then ends with CANCELLED and the call finishes.
  void OnCancel() override { generation_->Cancel(); }

  void OnDone() override {
    metrics_.streams_active().Decrement();
    metrics_.Generations(model_, OutcomeOf(final_status_)).Increment();
    metrics_.GenerationDuration(model_).Observe(absl::ToDoubleSeconds(absl::Now() - started_));
    if (deltas_ > 0) {
      metrics_.Tokens(model_).Increment(deltas_);
    }
    delete this;
  }

 private:
  void RequestNext() {
    generation_->Next([this](Step step) { OnStep(std::move(step)); });
  }

  void OnStep(Step step) {
    if (!step.chunk) {
      Conclude(std::move(step.status));
      return;
    }
    if (step.chunk->has_text_delta() || step.chunk->has_reasoning_delta()) {
      if (deltas_++ == 0) {
        metrics_.TimeToFirstToken(model_).Observe(absl::ToDoubleSeconds(absl::Now() - started_));
      }
    }
    response_ = std::move(*step.chunk);
    StartWrite(&response_);
  }

  void Conclude(absl::Status status) {
    final_status_ = std::move(status);
    if (!final_status_.ok() && final_status_.code() != absl::StatusCode::kCancelled) {
      common::LogWarning("generation failed",
                         {{"model", model_},
                          {"code", absl::StatusCodeToString(final_status_.code())},
                          {"error", std::string(final_status_.message())}});
    }
    Finish(ToGrpcStatus(final_status_));
  }

  const std::string model_;
  InferenceMetrics& metrics_;
  const absl::Time started_;
  std::shared_ptr<Generation> generation_;
  v1::GenerateResponse response_;
  int64_t deltas_ = 0;
  absl::Status final_status_;
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  const ModelRoute* route = models_.Find(request->model());
  if (route == nullptr) {
    return new RefusedReactor(grpc::Status(
        grpc::StatusCode::NOT_FOUND, absl::StrCat("unknown model \"", request->model(), "\"")));
  }
  if (request->messages().empty()) {
    return new RefusedReactor(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "messages must not be empty"));
  }
  return new GenerateReactor(*route, *request, DeadlineOf(*context), metrics_);
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const v1::ListModelsRequest* /*request*/,
                                                       v1::ListModelsResponse* response) {
  for (v1::Model& model : models_.List()) {
    *response->add_models() = std::move(model);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace parley::inference
