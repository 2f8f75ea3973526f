#include "inference/inference_service.h"

#include <chrono>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "inference/pending_chunks.h"

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

// One Generate call. A chunk is written as soon as it arrives when no write is in flight; the
// chunks that arrive during a write go out merged in the next one. The engine keeps being asked
// for chunks during a write while PendingChunks has room, so a fast engine costs fewer messages and
// a slow reader still holds the engine back. The call finishes only once neither an engine
// Next() nor a write is outstanding, so the reactor is never deleted while the engine still
// holds its callback. The mutex is this call's own: no two calls share it.
class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(const ModelRoute& route, const v1::GenerateRequest& request, absl::Time deadline,
                  InferenceMetrics& metrics)
      : model_(route.info.name()),
        metrics_(metrics),
        started_(absl::Now()),
        folds_end_(request.accepts_end()) {
    metrics_.streams_active().Increment();
    generation_ = route.engine->Start(request, deadline);
    {
      absl::MutexLock lock(&mutex_);
      requesting_ = true;
    }
    RequestNext();
  }

  void OnWriteDone(bool ok) override {
    Actions actions;
    {
      absl::MutexLock lock(&mutex_);
      writing_ = false;
      if (!ok) {
        // The call is gone (cancelled or the transport broke): stop the engine.
        waiting_.Clear();
        if (!end_.has_value()) {
          end_ = absl::CancelledError("stream closed by the client");
          actions.cancel = true;
        }
      }
      actions = Decide(actions);
    }
    Act(actions);
  }

  // Runs for client cancels and for deadline expiry alike; the outstanding
  // Next() (if any) then ends with CANCELLED and the call finishes.
  void OnCancel() override { generation_->Cancel(); }

  void OnDone() override {
    metrics_.streams_active().Decrement();
    metrics_.Generations(model_, OutcomeOf(final_status_)).Increment();
    metrics_.GenerationDuration(model_).Observe(absl::ToDoubleSeconds(absl::Now() - started_));
    int64_t deltas = 0;
    {
      absl::MutexLock lock(&mutex_);
      deltas = deltas_;
    }
    if (deltas > 0) {
      metrics_.Tokens(model_).Increment(static_cast<double>(deltas));
    }
    delete this;
  }

 private:
  // What to start once the lock is released.
  struct Actions {
    bool cancel = false;
    bool next = false;
    bool write = false;
    // With `write`: the write is the call's last and carries its status.
    bool finish = false;
  };

  void RequestNext() {
    generation_->Next([this](Step step) { OnStep(std::move(step)); });
  }

  void OnStep(Step step) {
    Actions actions;
    {
      absl::MutexLock lock(&mutex_);
      requesting_ = false;
      if (!step.chunk) {
        if (!end_.has_value()) {
          if (held_end_.has_value()) {  // A failed stream's usage, which no finish followed.
            waiting_.PushEnd(*std::move(held_end_));
            held_end_.reset();
          }
          end_ = std::move(step.status);
        }
      } else if (!end_.has_value()) {
        if (step.chunk->has_text_delta() || step.chunk->has_reasoning_delta()) {
          if (deltas_++ == 0) {
            metrics_.TimeToFirstToken(model_).Observe(
                absl::ToDoubleSeconds(absl::Now() - started_));
          }
        }
        Queue(std::move(*step.chunk));
      }
      actions = Decide(actions);
    }
    Act(actions);
  }

  // A caller that reads `end` gets usage and finish in one message, on the last delta when that
  // still waits: usage is held for the finish that follows it, never a token.
  void Queue(v1::GenerateResponse chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (folds_end_ && chunk.has_usage()) {
      *held_end_.emplace().mutable_usage() = std::move(*chunk.mutable_usage());
    } else if (folds_end_ && chunk.has_finish()) {
      v1::StreamEnd end = held_end_.value_or(v1::StreamEnd());
      held_end_.reset();
      *end.mutable_finish() = std::move(*chunk.mutable_finish());
      waiting_.PushEnd(std::move(end));
    } else {
      waiting_.Push(std::move(chunk));
    }
  }

  // Picks the next write, engine request and the finish, under the lock. When the engine has
  // ended and one chunk is left, it goes out with the status in one step.
  Actions Decide(Actions actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finishing_) {
      return actions;
    }
    const bool ended = end_.has_value() && !requesting_;
    if (!writing_ && !waiting_.empty()) {
      response_ = waiting_.Pop();
      writing_ = actions.write = true;
    }
    if (!end_.has_value() && !requesting_ && waiting_.HasRoom()) {
      requesting_ = actions.next = true;
    }
    if (ended && waiting_.empty() && (!writing_ || actions.write)) {
      finishing_ = actions.finish = true;
      final_status_ = *end_;
    }
    return actions;
  }

  void Act(const Actions& actions) {
    if (actions.cancel) {
      generation_->Cancel();
    }
    if (actions.finish) {
      LogFailure();
      if (actions.write) {
        // No OnWriteDone follows this write: OnDone does.
        StartWriteAndFinish(&response_, grpc::WriteOptions(), ToGrpcStatus(final_status_));
      } else {
        Finish(ToGrpcStatus(final_status_));
      }
      return;
    }
    if (actions.write) {
      StartWrite(&response_);
    }
    if (actions.next) {
      RequestNext();
    }
  }

  void LogFailure() {
    if (!final_status_.ok() && final_status_.code() != absl::StatusCode::kCancelled) {
      common::LogWarning("generation failed",
                         {{"model", model_},
                          {"code", absl::StatusCodeToString(final_status_.code())},
                          {"error", std::string(final_status_.message())}});
    }
  }

  const std::string model_;
  InferenceMetrics& metrics_;
  const absl::Time started_;
  const bool folds_end_;
  std::shared_ptr<Generation> generation_;
  absl::Mutex mutex_;
  // Owned by the write in flight.
  v1::GenerateResponse response_;
  PendingChunks waiting_ ABSL_GUARDED_BY(mutex_);
  // The usage that waits for its finish, for a caller that reads `end`.
  std::optional<v1::StreamEnd> held_end_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool requesting_ ABSL_GUARDED_BY(mutex_) = false;
  bool finishing_ ABSL_GUARDED_BY(mutex_) = false;
  // Why the stream ends, once the engine ended it or the client went away.
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mutex_);
  int64_t deltas_ ABSL_GUARDED_BY(mutex_) = 0;
  // Set before Finish(); read in OnDone, which follows it.
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
