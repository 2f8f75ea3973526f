#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/backend_readiness.h"
#include "edge/clients/grpc_status.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace parley::edge {

// One server-streaming call, read one message at a time: after `on_message`
// the next read starts only when the consumer calls ReadNext(), so a consumer
// that is not ready (a slow socket) stops pulling and gRPC flow control reaches
// the server. Callbacks run on gRPC threads; `on_done` runs exactly once.
template <class Request, class Response>
class ReadStream final : public grpc::ClientReadReactor<Response>,
                         public std::enable_shared_from_this<ReadStream<Request, Response>> {
 public:
  struct Callbacks {
    std::function<void(Response)> on_message;
    std::function<void(absl::Status)> on_done;
  };
  // Binds the stub's async method, e.g. `stub->async()->Generate(context, request, reactor)`.
  using StartRpc =
      std::function<void(grpc::ClientContext*, const Request*, grpc::ClientReadReactor<Response>*)>;

  ReadStream(StartRpc start_rpc, Callbacks callbacks)
      : start_rpc_(std::move(start_rpc)), callbacks_(std::move(callbacks)) {}

  // With `readiness`, the call goes out once the backend's channel is connected, or ends with
  // its error (through `on_done`) when it does not connect in time. Cancel() may come first.
  void Start(Request request, absl::Duration deadline, const common::TraceContext& trace,
             BackendReadiness* readiness = nullptr) {
    self_ = this->shared_from_this();
    request_ = std::move(request);
    common::AttachTraceContext(context_, trace);
    {
      // The first read is as good as asked for: ReadNext() before the call starts does nothing,
      // and Cancel() leaves the hold to that read's failure.
      absl::MutexLock lock(&mutex_);
      read_pending_ = true;
    }
    if (readiness == nullptr) {
      return StartCallNow(deadline);
    }
    readiness->WhenReady([self = self_, deadline](absl::Status ready) {
      if (ready.ok()) {
        return self->StartCallNow(deadline);
      }
      auto on_done = std::move(self->callbacks_.on_done);
      self->callbacks_ = {};
      if (on_done) {
        on_done(std::move(ready));
      }
      self->self_.reset();
    });
  }

  // Any thread. Asked while a message is being handed over, the read starts once `on_message`
  // has returned, so messages reach the consumer one at a time and in order.
  void ReadNext() {
    {
      absl::MutexLock lock(&mutex_);
      if (handing_over_) {
        next_asked_ = true;
        return;
      }
      if (cancelled_ || hold_released_ || read_pending_) {
        return;
      }
      read_pending_ = true;
    }
    this->StartRead(&response_);
  }

  // Ends the call; `on_done` follows with CANCELLED. Safe to repeat.
  void Cancel() {
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
      this->RemoveHold();
    }
  }

 private:
  void StartCallNow(absl::Duration deadline) {
    // A cancelled context cancels the call as it starts: on_done then reports CANCELLED.
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    start_rpc_(&context_, &request_, this);
    this->AddHold();
    this->StartRead(&response_);
    this->StartCall();
  }

  void OnReadDone(bool ok) override {
    bool release = false;
    {
      absl::MutexLock lock(&mutex_);
      // The end of the stream, or a message that raced with Cancel() (nobody
      // will ask for the next one): either way the hold goes now.
      if ((!ok || cancelled_) && !hold_released_) {
        hold_released_ = true;
        release = true;
      }
      if (!ok || release) {
        read_pending_ = false;
      } else {
        handing_over_ = true;
      }
    }
    if (release) {
      this->RemoveHold();
    }
    if (!ok || release) {
      return;
    }
    // No read starts into `response_` until the hand-over ends (see ReadNext).
    callbacks_.on_message(std::move(response_));
    response_.Clear();
    bool start_read = false;
    {
      absl::MutexLock lock(&mutex_);
      handing_over_ = false;
      read_pending_ = false;
      if (cancelled_) {
        // Cancel() left the hold to this read, which it saw pending.
        release = !hold_released_;
        hold_released_ = true;
      } else if (next_asked_) {
        read_pending_ = true;
        start_read = true;
      }
      next_asked_ = false;
    }
    if (release) {
      this->RemoveHold();
    } else if (start_read) {
      this->StartRead(&response_);
    }
  }

  void OnDone(const grpc::Status& status) override {
    auto on_done = std::move(callbacks_.on_done);
    callbacks_ = {};
    if (on_done) {
      on_done(ToAbslStatus(status));
    }
    // Last line: may destroy this.
    self_.reset();
  }

  const StartRpc start_rpc_;
  Callbacks callbacks_;
  grpc::ClientContext context_;
  Request request_;
  Response response_;

  absl::Mutex mutex_;
  // A read is pending, or its message is being handed over.
  bool read_pending_ ABSL_GUARDED_BY(mutex_) = false;
  // `on_message` is running; a ReadNext() meanwhile sets `next_asked_`.
  bool handing_over_ ABSL_GUARDED_BY(mutex_) = false;
  bool next_asked_ ABSL_GUARDED_BY(mutex_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mutex_) = false;
  // The hold keeps OnDone away between a message and the consumer's ReadNext().
  bool hold_released_ ABSL_GUARDED_BY(mutex_) = false;
  std::shared_ptr<ReadStream> self_;
};

}  // namespace parley::edge
