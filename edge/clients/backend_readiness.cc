#include "edge/clients/backend_readiness.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace parley::edge {
namespace {

// A watch wakes up at least this often, so the destructor never waits for a long timeout.
constexpr absl::Duration kLongestWatch = absl::Milliseconds(250);

}  // namespace

BackendReadiness::BackendReadiness(std::shared_ptr<grpc::Channel> channel, std::string backend,
                                   absl::Duration timeout)
    : channel_(std::move(channel)), backend_(std::move(backend)), timeout_(timeout) {
  thread_ = std::thread([this] { Run(); });
}

BackendReadiness::~BackendReadiness() {
  std::vector<Waiter> waiters;
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    waiters.swap(waiters_);
  }
  // A pending watch completes by its (short) deadline; Next() returns false after that.
  queue_.Shutdown();
  thread_.join();
  for (Waiter& waiter : waiters) {
    waiter.then(absl::UnavailableError(absl::StrCat(backend_, " client is shutting down")));
  }
}

void BackendReadiness::WhenReady(std::function<void(absl::Status)> then) {
  WhenReady(std::move(then), absl::InfiniteFuture());
}

void BackendReadiness::WhenReady(std::function<void(absl::Status)> then, absl::Time deadline) {
  const grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  if (state == GRPC_CHANNEL_READY) {
    return then(absl::OkStatus());
  }
  {
    absl::MutexLock lock(&mutex_);
    if (!stopping_) {
      const absl::Time now = absl::Now();
      deadline = std::min(deadline, now + timeout_);
      auto at = std::upper_bound(
          waiters_.begin(), waiters_.end(), deadline,
          [](absl::Time time, const Waiter& waiter) { return time < waiter.deadline; });
      waiters_.insert(
          at, Waiter{deadline, std::max(deadline - now, absl::ZeroDuration()), std::move(then)});
      // A watch in place wakes within kLongestWatch, so a new earliest waiter is failed at most
      // that late; readiness wakes every waiter at once.
      if (!watching_) {
        WatchLocked(state);
      }
      return;
    }
  }
  then(absl::UnavailableError(absl::StrCat(backend_, " client is shutting down")));
}

void BackendReadiness::WatchLocked(grpc_connectivity_state observed) {
  watching_ = true;
  const absl::Time wake = std::min(waiters_.front().deadline, absl::Now() + kLongestWatch);
  channel_->NotifyOnStateChange(observed, absl::ToChronoTime(wake), &queue_, nullptr);
}

void BackendReadiness::Run() {
  void* tag = nullptr;
  bool changed = false;
  while (true) {
    {
      // With gRPC's epoll poller every thread blocked in a polling queue's Next() takes turns
      // serving the whole process's gRPC sockets, handing each completion on to gRPC's callback
      // threads: an idle readiness thread there added a thread hop to most messages of every
      // call. So it waits on the queue only while a watch is pending.
      absl::MutexLock lock(&mutex_);
      mutex_.Await(absl::Condition(
          +[](BackendReadiness* self) { return self->watching_ || self->stopping_; }, this));
    }
    if (!queue_.Next(&tag, &changed)) {
      break;
    }
    const grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
    std::vector<Waiter> ready;
    std::vector<Waiter> expired;
    {
      absl::MutexLock lock(&mutex_);
      watching_ = false;
      if (state == GRPC_CHANNEL_READY) {
        ready.swap(waiters_);
      } else {
        const absl::Time now = absl::Now();
        auto first_waiting = std::find_if(waiters_.begin(), waiters_.end(),
                                          [now](const Waiter& w) { return w.deadline > now; });
        expired.assign(std::make_move_iterator(waiters_.begin()),
                       std::make_move_iterator(first_waiting));
        waiters_.erase(waiters_.begin(), first_waiting);
      }
      if (!waiters_.empty() && !stopping_) {
        WatchLocked(state);
      }
    }
    for (Waiter& waiter : ready) {
      waiter.then(absl::OkStatus());
    }
    for (Waiter& waiter : expired) {
      waiter.then(
          absl::UnavailableError(absl::StrCat(backend_, " is not reachable: not connected within ",
                                              absl::ToInt64Milliseconds(waiter.waited), " ms")));
    }
  }
}

}  // namespace parley::edge
