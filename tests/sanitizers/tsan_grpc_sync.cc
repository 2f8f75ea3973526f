// Linked into every executable of a ThreadSanitizer build (scripts/test --sanitize=thread), next
// to tsan_absl_sync.cc.
//
// Debian's gRPC is built without ThreadSanitizer, so TSan cannot see the two orderings the
// library promises and every callback reactor relies on:
//
// - An operation on a call (a write, a read, the finish) comes before its completion: the
//   message a write serialised, the buffer a read fills, the op set and tag gRPC's header code
//   prepared on the starting thread are then used or reused on the thread that runs the
//   completion (OnWriteDone, OnReadDone, ...). The core passes them through atomics TSan cannot
//   see, so each reuse would be reported as a race with the thread that started the operation.
// - A server call's last reaction (OnCancel included, which gRPC runs on an executor) comes
//   before its OnDone, which gRPC may hand to another thread (ServerCallbackCall::ScheduleOnDone);
//   and every OnDone comes before Server::Shutdown returns (the server counts its calls down with
//   its own atomics).
// - An alarm's callback comes before the callback is destroyed (a grpc::Alarm frees it on
//   whichever thread lets go of it last, again through an uninstrumented reference count).
//
// These definitions take the place of the library's (an executable's symbols come first), call
// the library's own through dlsym, and tell TSan about those two orderings: nothing more. Parley
// touching a message while its operation is in flight, or a reactor's state from two threads
// without its lock, is still reported.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <utility>

#include "grpc/grpc.h"
#include "grpcpp/alarm.h"
#include "grpcpp/server.h"
#include "grpcpp/support/callback_common.h"
#include "grpcpp/support/server_callback.h"

namespace {

template <typename Function>
Function Real(const char* mangled_name) {
  void* symbol = dlsym(RTLD_NEXT, mangled_name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_grpc_sync: %s not found in gRPC\n", mangled_name);
    std::abort();
  }
  return reinterpret_cast<Function>(symbol);
}

#define PARLEY_REAL(type, name) static const auto real = Real<type>(name)

using FunctorRun = void (*)(grpc_completion_queue_functor*, int);

// The completion functions of gRPC's two callback tags (header code, compiled into this
// executable) are private; an explicit instantiation may name them.
template <typename Tag, FunctorRun kRun>
struct ExposeRun {
  friend FunctorRun RunOf(Tag) { return kRun; }
};
struct SuccessTagRun {
  friend FunctorRun RunOf(SuccessTagRun);
};
struct StatusTagRun {
  friend FunctorRun RunOf(StatusTagRun);
};
template struct ExposeRun<SuccessTagRun, &grpc::internal::CallbackWithSuccessTag::StaticRun>;
template struct ExposeRun<StatusTagRun, &grpc::internal::CallbackWithStatusTag::StaticRun>;

// ServerCallbackCall::CallOnDone is a private virtual; so is the member pointer to it.
using CallOnDoneMember = void (grpc::internal::ServerCallbackCall::*)();
template <typename Tag, CallOnDoneMember kMember>
struct ExposeCallOnDone {
  friend CallOnDoneMember CallOnDoneOf(Tag) { return kMember; }
};
struct CallOnDoneTag {
  friend CallOnDoneMember CallOnDoneOf(CallOnDoneTag);
};
template struct ExposeCallOnDone<CallOnDoneTag, &grpc::internal::ServerCallbackCall::CallOnDone>;

// What gRPC hands to another thread in place of the call whose OnDone it schedules: it acquires
// what the last reaction released, then runs the call's own CallOnDone there.
class OrderedOnDone final : public grpc::internal::ServerCallbackCall {
 public:
  explicit OrderedOnDone(grpc::internal::ServerCallbackCall* call) : call_(call) {}

 private:
  grpc::internal::ServerReactor* reactor() override { return nullptr; }
  void CallOnDone() override {
    __tsan_acquire(call_);
    (call_->*CallOnDoneOf(CallOnDoneTag()))();
    delete this;
  }

  grpc::internal::ServerCallbackCall* const call_;
};

// Released by every call reference dropped (a server call drops its own right after OnDone),
// acquired when Server::Shutdown returns, by when gRPC has run every OnDone.
char calls_released;

// A completion runs where the tag's own function would, after acquiring what the start released.
void AcquiringSuccessRun(grpc_completion_queue_functor* tag, int ok) {
  __tsan_acquire(tag);
  RunOf(SuccessTagRun())(tag, ok);
}

void AcquiringStatusRun(grpc_completion_queue_functor* tag, int ok) {
  __tsan_acquire(tag);
  RunOf(StatusTagRun())(tag, ok);
}

// Not instrumented: the tag is gRPC's (its own tags are freed by its own code, unseen), and only
// the library reads the function it runs.
__attribute__((no_sanitize_thread)) void MakeCompletionAcquire(
    grpc_completion_queue_functor* functor) {
  if (functor->functor_run == RunOf(SuccessTagRun()) ||
      functor->functor_run == &AcquiringSuccessRun) {
    functor->functor_run = &AcquiringSuccessRun;
  } else if (functor->functor_run == RunOf(StatusTagRun()) ||
             functor->functor_run == &AcquiringStatusRun) {
    functor->functor_run = &AcquiringStatusRun;
  }
}

// A reactor's OnCancel, then a release of what it did: CallOnCancel runs OnCancel on an executor
// and then drops its reference to the call in gRPC's own code, which TSan does not see, so the
// OnDone that reference may let run acquires this release instead (ScheduleOnDone). gRPC does not
// touch the reactor it was given once its OnCancel has returned.
class ReleasingCancelReactor final : public grpc::internal::ServerReactor {
 public:
  ReleasingCancelReactor(grpc::internal::ServerReactor* reactor, void* released)
      : reactor_(reactor), released_(released) {}
  void OnCancel() override {
    reactor_->OnCancel();
    __tsan_release(released_);
    delete this;
  }
  void OnDone() override {}  // Never called: OnDone goes to the call's own reactor.
  bool InternalInlineable() override { return reactor_->InternalInlineable(); }

 private:
  grpc::internal::ServerReactor* const reactor_;
  void* const released_;
};

// An alarm callback that releases when it has run and acquires before it is destroyed.
class OrderedAlarmCallback {
 public:
  explicit OrderedAlarmCallback(std::function<void(bool)> callback)
      : callback_(std::move(callback)), key_(std::make_shared<char>()) {}
  OrderedAlarmCallback(const OrderedAlarmCallback&) = default;
  OrderedAlarmCallback(OrderedAlarmCallback&&) = default;
  ~OrderedAlarmCallback() {
    if (key_ != nullptr) {
      __tsan_acquire(key_.get());
    }
  }

  void operator()(bool fired) {
    callback_(fired);
    __tsan_release(key_.get());
  }

 private:
  std::function<void(bool)> callback_;
  std::shared_ptr<char> key_;
};

}  // namespace

extern "C" {

// Every operation of the C++ API starts here (libgrpc++ calls it for each op set). The tag of a
// callback operation is one of the two callback tags, whose completion is then made to acquire.
// (The tag of a completion-queue operation is its op set; completion queues are below.)
grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops, void* tag,
                                      void* reserved) {
  PARLEY_REAL(grpc_call_error(*)(grpc_call*, const grpc_op*, size_t, void*, void*),
              "grpc_call_start_batch");
  if (tag != nullptr) {
    MakeCompletionAcquire(static_cast<grpc_completion_queue_functor*>(tag));
    __tsan_release(tag);
  }
  return real(call, ops, nops, tag, reserved);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue* cq, gpr_timespec deadline,
                                      void* reserved) {
  PARLEY_REAL(grpc_event(*)(grpc_completion_queue*, gpr_timespec, void*),
              "grpc_completion_queue_next");
  const grpc_event event = real(cq, deadline, reserved);
  if (event.type == GRPC_OP_COMPLETE && event.tag != nullptr) {
    __tsan_acquire(event.tag);
  }
  return event;
}

grpc_event grpc_completion_queue_pluck(grpc_completion_queue* cq, void* tag, gpr_timespec deadline,
                                       void* reserved) {
  PARLEY_REAL(grpc_event(*)(grpc_completion_queue*, void*, gpr_timespec, void*),
              "grpc_completion_queue_pluck");
  const grpc_event event = real(cq, tag, deadline, reserved);
  if (event.type == GRPC_OP_COMPLETE && event.tag != nullptr) {
    __tsan_acquire(event.tag);
  }
  return event;
}

void grpc_call_unref(grpc_call* call) {
  PARLEY_REAL(void (*)(grpc_call*), "grpc_call_unref");
  __tsan_release(&calls_released);
  real(call);
}

}  // extern "C"

namespace grpc {

namespace internal {

void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  PARLEY_REAL(void (*)(ServerCallbackCall*, bool),
              "_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb");
  // The last Unref may be gRPC's own copy of MaybeDone (its ServerContext's completion op),
  // whose atomics TSan does not see: acquire what the Unrefs in Parley's copy released there.
  __tsan_acquire(&callbacks_outstanding_);
  if (inline_ondone) {
    return real(this, true);  // On this thread, after the last reaction.
  }
  __tsan_release(this);
  real(new OrderedOnDone(this), false);
}

void ServerCallbackCall::CallOnCancel(ServerReactor* reactor) {
  PARLEY_REAL(void (*)(ServerCallbackCall*, ServerReactor*),
              "_ZN4grpc8internal18ServerCallbackCall12CallOnCancelEPNS0_13ServerReactorE");
  real(this, new ReleasingCancelReactor(reactor, &callbacks_outstanding_));
}

}  // namespace internal

void Server::ShutdownInternal(gpr_timespec deadline) {
  PARLEY_REAL(void (*)(Server*, gpr_timespec), "_ZN4grpc6Server16ShutdownInternalE12gpr_timespec");
  real(this, deadline);
  __tsan_acquire(&calls_released);
}

void Alarm::SetInternal(gpr_timespec deadline, std::function<void(bool)> f) {
  PARLEY_REAL(void (*)(Alarm*, gpr_timespec, std::function<void(bool)>),
              "_ZN4grpc5Alarm11SetInternalE12gpr_timespecSt8functionIFvbEE");
  real(this, deadline, std::function<void(bool)>(OrderedAlarmCallback(std::move(f))));
}

}  // namespace grpc
