#include "edge/turn/resume.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/post.hpp"
#include "edge/protocol/messages.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;

// A watch follows a reply that may still be generating; this bounds a writer that vanished.
constexpr absl::Duration kWatchDeadline = absl::Minutes(10);

// Persistence's finish reason for a reply whose writer's lease lapsed, and the
// documented error code a client is given for it.
constexpr absl::string_view kLeaseExpiredReason = "lease_expired";
constexpr absl::string_view kReplyAbandonedCode = "reply_abandoned";

std::string FinishReason(const persistence_pb::WatchFinish& finish) {
  return finish.finish_reason().empty() ? std::string("stop") : finish.finish_reason();
}

class Resume : public std::enable_shared_from_this<Resume> {
 public:
  Resume(PersistenceClient& persistence, TurnTracker& tracker, net::any_io_executor executor,
         std::weak_ptr<EventSink> sink, std::string user_id, std::string message_id,
         int64_t after_seq, bool announce, common::TraceContext trace)
      : persistence_(persistence),
        tracker_(tracker),
        executor_(std::move(executor)),
        sink_(std::move(sink)),
        user_id_(std::move(user_id)),
        message_id_(std::move(message_id)),
        after_seq_(after_seq),
        announce_(announce),
        trace_(std::move(trace)) {}

  void Start() {
    last_seq_sent_ = after_seq_;
    std::weak_ptr<Resume> weak = weak_from_this();
    key_ = tracker_.Add([weak] {
      if (auto self = weak.lock()) {
        self->Cancel();
      }
    });
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user_id_);
    request.set_message_id(message_id_);
    persistence_.GetMessage(
        std::move(request), trace_,
        [self = shared_from_this()](absl::StatusOr<persistence_pb::GetMessageResponse> response) {
          net::post(self->executor_, [self, response = std::move(response)]() mutable {
            self->OnMessage(std::move(response));
          });
        });
  }

 private:
  void Cancel() {
    net::post(executor_, [self = shared_from_this()] {
      self->cancelled_ = true;
      if (self->watch_ != nullptr) {
        self->watch_->Cancel();
      }
    });
  }

  void Emit(Event event) {
    if (std::shared_ptr<EventSink> sink = sink_.lock()) {
      sink->Emit(std::move(event), std::nullopt);
    }
  }

  void OnMessage(absl::StatusOr<persistence_pb::GetMessageResponse> response) {
    // Someone else's message answers exactly like a missing one.
    const bool found =
        response.ok() && response->message().role() == persistence_pb::ROLE_ASSISTANT;
    if (announce_) {
      Emit(Resumed{message_id_, found});
    }
    if (!found || cancelled_) {
      if (!found && !announce_) {
        Emit(ErrorEvent{ErrorCode::kNotFound, "the reply cannot be found", ""});
      }
      return Done();
    }
    StartWatch();
  }

  void StartWatch() {
    persistence_pb::WatchMessageRequest request;
    request.set_user_id(user_id_);
    request.set_message_id(message_id_);
    // After a broken watch, from the last delta this resume sent.
    request.set_after_seq(std::max(after_seq_, last_seq_sent_));
    watch_ = persistence_.Watch(
        std::move(request), kWatchDeadline, trace_,
        WatchStream::Callbacks{
            .on_message =
                [self = shared_from_this()](persistence_pb::WatchMessageResponse event) {
                  net::post(self->executor_, [self, event = std::move(event)]() mutable {
                    self->OnEvent(std::move(event));
                  });
                },
            .on_done =
                [self = shared_from_this()](absl::Status status) {
                  net::post(self->executor_,
                            [self, status = std::move(status)] { self->OnWatchDone(status); });
                },
        });
  }

  void OnEvent(persistence_pb::WatchMessageResponse event) {
    // The watch works: a later break gets the whole readiness timeout again.
    give_up_at_.reset();
    if (event.has_delta()) {
      const persistence_pb::WatchDelta& delta = event.delta();
      if (delta.seq() > last_seq_sent_) {
        last_seq_sent_ = delta.seq();
        text_ += delta.text();
        Emit(StreamToken{message_id_, delta.seq(), delta.text()});
      }
    } else if (event.has_finish()) {
      finished_ = true;
      Finish(event.finish());
    }
    std::shared_ptr<EventSink> sink = sink_.lock();
    if (sink == nullptr) {
      // Nobody is listening any more.
      cancelled_ = true;
      watch_->Cancel();
    } else if (sink->Writable()) {
      watch_->ReadNext();
    } else {
      sink->WhenWritable([self = shared_from_this()] {
        if (self->watch_ != nullptr) {
          self->watch_->ReadNext();
        }
      });
    }
  }

  void Finish(const persistence_pb::WatchFinish& finish) {
    Emit(ReplyEnd(message_id_, finish, last_seq_sent_, std::move(text_)));
  }

  void OnWatchDone(const absl::Status& status) {
    // A watch that broke under the resume (persistence restarted or drained) is opened again
    // where it stopped, as long as persistence comes back within the readiness timeout.
    const bool broken = status.code() == absl::StatusCode::kUnavailable ||
                        status.code() == absl::StatusCode::kCancelled;
    if (!finished_ && !cancelled_ && broken) {
      const absl::Time now = absl::Now();
      if (!give_up_at_.has_value()) {
        give_up_at_ = now + persistence_.ready_timeout();
      }
      if (now < *give_up_at_) {
        return StartWatch();
      }
    }
    if (!finished_ && !cancelled_) {
      Emit(ErrorEvent{ErrorCode::kStorageUnavailable,
                      absl::StrCat("cannot follow the reply: ", status.message()), ""});
    }
    watch_.reset();
    Done();
  }

  void Done() { tracker_.Remove(key_); }

  PersistenceClient& persistence_;
  TurnTracker& tracker_;
  net::any_io_executor executor_;
  std::weak_ptr<EventSink> sink_;
  const std::string user_id_;
  const std::string message_id_;
  const int64_t after_seq_;
  const bool announce_;
  const common::TraceContext trace_;
  uint64_t key_ = 0;
  std::shared_ptr<WatchStream> watch_;
  int64_t last_seq_sent_ = 0;
  // Text sent by this resume, for stream_interrupted's partialResponse.
  std::string text_;
  bool finished_ = false;
  bool cancelled_ = false;
  // Set when a watch broke and no later one delivered anything: the resume gives up then.
  std::optional<absl::Time> give_up_at_;
};

}  // namespace

Event ReplyEnd(const std::string& message_id, const persistence_pb::WatchFinish& finish,
               int64_t last_seq_sent, std::string text) {
  const int64_t last_seq = std::max(finish.last_seq(), last_seq_sent);
  switch (finish.status()) {
    case persistence_pb::MESSAGE_STATUS_COMPLETE:
      return StreamComplete{message_id,
                            last_seq,
                            FinishReason(finish),
                            finish.usage().prompt_tokens(),
                            finish.usage().completion_tokens(),
                            /*model=*/"",
                            finish.sha256()};
    case persistence_pb::MESSAGE_STATUS_CANCELLED:
      return StreamCancelled{message_id, last_seq, finish.sha256()};
    default:
      break;
  }
  // Persistence ended a reply whose writer (an edge) stopped renewing its lease.
  if (finish.finish_reason() == kLeaseExpiredReason) {
    return StreamInterrupted{message_id,
                             last_seq,
                             std::string(kReplyAbandonedCode),
                             "the edge writing the reply went away",
                             std::move(text),
                             finish.sha256()};
  }
  // A reply cut by its deadline is stored with that as its reason.
  const absl::string_view code =
      ErrorCodeName(finish.finish_reason() == ErrorCodeName(ErrorCode::kDeadlineExceeded)
                        ? ErrorCode::kDeadlineExceeded
                        : ErrorCode::kInferenceUnavailable);
  return StreamInterrupted{message_id,
                           last_seq,
                           std::string(code.data(), code.size()),
                           absl::StrCat("the model stopped: ", finish.finish_reason()),
                           std::move(text),
                           finish.sha256()};
}

void ResumeReply(PersistenceClient& persistence, TurnTracker& tracker,
                 boost::asio::any_io_executor executor, std::weak_ptr<EventSink> sink,
                 std::string user_id, std::string message_id, int64_t after_seq, bool announce,
                 common::TraceContext trace) {
  std::make_shared<Resume>(persistence, tracker, std::move(executor), std::move(sink),
                           std::move(user_id), std::move(message_id), after_seq, announce,
                           std::move(trace))
      ->Start();
}

}  // namespace parley::edge
