#include "edge/clients/persistence_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/admission.h"
#include "edge/clients/grpc_status.h"

namespace parley::edge {
namespace {

// Bounds of one `deltas` frame: far below gRPC's 4 MiB message limit.
constexpr int kMaxBatchDeltas = 1024;
constexpr size_t kMaxBatchBytes = 1 << 20;

// One unary call: owns what gRPC needs until the callback has run.
template <class Request, class Response>
struct UnaryCall {
  grpc::ClientContext context;
  Request request;
  Response response;
};

// `until`, when finite, bounds the whole call, the wait for readiness included.
template <class Request, class Response, class Method>
void CallUnary(BackendReadiness& readiness, Method method, Request request, absl::Duration deadline,
               const common::TraceContext& trace, PersistenceClient::Callback<Response> done,
               Admission admission = Admission::kNew, absl::Time until = absl::InfiniteFuture()) {
  auto call = std::make_shared<UnaryCall<Request, Response>>();
  call->request = std::move(request);
  common::AttachTraceContext(call->context, trace);
  if (admission == Admission::kContinuing) {
    call->context.AddMetadata(common::kAdmissionMetadataKey, common::kAdmissionContinuing);
  }
  readiness.WhenReady(
      [call, method = std::move(method), deadline, until,
       done = std::move(done)](absl::Status ready) mutable {
        if (!ready.ok()) {
          return done(std::move(ready));
        }
        // The deadline counts from here: waiting for the backend does not eat into the call's time.
        call->context.set_deadline(absl::ToChronoTime(std::min(absl::Now() + deadline, until)));
        // The channel may have lost its connection since it reported ready; the call then waits
        // for the reconnect (within its deadline) instead of failing at once.
        call->context.set_wait_for_ready(true);
        method(&call->context, &call->request, &call->response,
               [call, deadline, done = std::move(done)](grpc::Status status) {
                 if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
                   // gRPC's own text ("Deadline Exceeded") does not say who was slow.
                   return done(absl::DeadlineExceededError(
                       absl::StrCat("persistence did not answer within ",
                                    absl::ToInt64Milliseconds(deadline), " ms")));
                 }
                 if (!status.ok()) {
                   done(ToAbslStatus(status));
                   return;
                 }
                 done(std::move(call->response));
               });
      },
      until);
}

}  // namespace

// One WriteMessageStream call of a MessageWriter: writes the frames it is given in order,
// reports every acknowledgement and its end to the writer, and half-closes with `finish` (or
// `last`), the stream's last write.
class MessageWriter::Attempt final
    : public grpc::ClientBidiReactor<persistence_pb::WriteMessageStreamRequest,
                                     persistence_pb::WriteMessageStreamResponse>,
      public std::enable_shared_from_this<MessageWriter::Attempt> {
 public:
  // `frames` start with `open` (or `start`); Send() may add more before Start().
  Attempt(std::shared_ptr<MessageWriter> writer,
          std::deque<persistence_pb::WriteMessageStreamRequest> frames)
      : writer_(std::move(writer)), queue_(std::move(frames)) {
    finish_queued_ = !queue_.empty() && queue_.back().has_finish();
    starts_turn_ = !queue_.empty() && queue_.front().has_start();
  }

  void Start(persistence_pb::ConversationService::Stub* stub, absl::Time deadline,
             const common::TraceContext& trace) {
    self_ = shared_from_this();
    context_.set_deadline(absl::ToChronoTime(deadline));
    if (starts_turn_) {
      // A start is not resent if the stream breaks: like a unary call, it waits out a
      // reconnect instead.
      context_.set_wait_for_ready(true);
    }
    common::AttachTraceContext(context_, trace);
    stub->async()->WriteMessageStream(&context_, this);
    AddHold();
    {
      absl::MutexLock lock(&mutex_);
      started_ = true;
      WriteNextLocked();
    }
    StartRead(&response_);
    StartCall();
  }

  // Queues `frame`; unless `more_follows`, starts writing what is queued. Frames sent together
  // may go out in one message.
  void Send(persistence_pb::WriteMessageStreamRequest frame, bool more_follows = false) {
    bool release = false;
    {
      absl::MutexLock lock(&mutex_);
      if (broken_ || finish_queued_) {
        return;
      }
      finish_queued_ = frame.has_finish();
      queue_.push_back(std::move(frame));
      if (more_follows) {
        return;
      }
      release = WriteNextLocked();
    }
    if (release) {
      RemoveHold();
    }
  }

  void Cancel() { context_.TryCancel(); }

 private:
  // Starts the next write if none is in flight; returns true if the hold must be released.
  bool WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (!started_ || writing_ || hold_released_) {
      return false;
    }
    if (broken_) {
      hold_released_ = true;
      return true;
    }
    if (queue_.empty() || last_written_) {
      return false;
    }
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    if (in_flight_.has_delta()) {
      MergeQueuedDeltasLocked();
      FoldQueuedFinishLocked();
    }
    writing_ = true;
    if (in_flight_.has_finish() || in_flight_.has_last()) {
      // The half-close goes with it: the final acknowledgement and status are all that is left.
      last_written_ = true;
      StartWriteLast(&in_flight_, grpc::WriteOptions());
    } else {
      StartWrite(&in_flight_);
    }
    return false;
  }

  // A `finish` queued right behind the deltas in `in_flight_` goes out with them (a `last`
  // frame), to a persistence that takes it.
  void FoldQueuedFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (!takes_last_ || queue_.empty() || !queue_.front().has_finish()) {
      return;
    }
    persistence_pb::StreamLast last;
    if (in_flight_.has_delta()) {
      *last.add_deltas() = std::move(*in_flight_.mutable_delta());
    } else {
      *last.mutable_deltas() = std::move(*in_flight_.mutable_deltas()->mutable_deltas());
    }
    *last.mutable_finish() = std::move(*queue_.front().mutable_finish());
    queue_.pop_front();
    *in_flight_.mutable_last() = std::move(last);
  }

  // The deltas that queued up behind the previous write go out with `in_flight_`'s in one
  // message (a `deltas` frame), up to kMaxBatchDeltas or kMaxBatchBytes of text. A lone delta
  // stays a `delta` frame.
  void MergeQueuedDeltasLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (queue_.empty() || !queue_.front().has_delta()) {
      return;
    }
    persistence_pb::StreamDeltas batch;
    size_t bytes = in_flight_.delta().text().size();
    *batch.add_deltas() = std::move(*in_flight_.mutable_delta());
    while (!queue_.empty() && queue_.front().has_delta() && batch.deltas_size() < kMaxBatchDeltas &&
           bytes + queue_.front().delta().text().size() <= kMaxBatchBytes) {
      bytes += queue_.front().delta().text().size();
      *batch.add_deltas() = std::move(*queue_.front().mutable_delta());
      queue_.pop_front();
    }
    if (batch.deltas_size() == 1) {
      *in_flight_.mutable_delta() = std::move(*batch.mutable_deltas(0));
      return;
    }
    *in_flight_.mutable_deltas() = std::move(batch);
  }

  // Writing stops: the stream is over, and OnDone says why.
  void Break(bool write_done) {
    bool release = false;
    {
      absl::MutexLock lock(&mutex_);
      if (write_done) {
        writing_ = false;
      }
      broken_ = true;
      queue_.clear();
      release = WriteNextLocked();
    }
    if (release) {
      RemoveHold();
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      return Break(/*write_done=*/true);
    }
    bool release = false;
    {
      absl::MutexLock lock(&mutex_);
      writing_ = false;
      if (last_written_ && !hold_released_) {
        hold_released_ = release = true;
      } else {
        release = WriteNextLocked();
      }
    }
    if (release) {
      RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The server ended the stream; stop writing and let OnDone report why.
      return Break(/*write_done=*/false);
    }
    if (response_.takes_last()) {
      absl::MutexLock lock(&mutex_);
      takes_last_ = true;
    }
    writer_->OnAck(this, response_);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<MessageWriter> writer = std::move(writer_);
    writer->OnAttemptDone(this, ToAbslStatus(status));
    // Last line: may destroy this.
    self_.reset();
  }

  std::shared_ptr<MessageWriter> writer_;
  bool starts_turn_ = false;
  grpc::ClientContext context_;
  persistence_pb::WriteMessageStreamResponse response_;

  absl::Mutex mutex_;
  std::deque<persistence_pb::WriteMessageStreamRequest> queue_ ABSL_GUARDED_BY(mutex_);
  persistence_pb::WriteMessageStreamRequest in_flight_ ABSL_GUARDED_BY(mutex_);
  // Frames wait in `queue_` until the call is bound.
  bool started_ ABSL_GUARDED_BY(mutex_) = false;
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finish_queued_ ABSL_GUARDED_BY(mutex_) = false;
  // The write of `finish` or `last`, with the half-close, has started.
  bool last_written_ ABSL_GUARDED_BY(mutex_) = false;
  // The acknowledgements say persistence takes a `last` frame.
  bool takes_last_ ABSL_GUARDED_BY(mutex_) = false;
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;
  // The hold keeps OnDone away while frames may still be written.
  bool hold_released_ ABSL_GUARDED_BY(mutex_) = false;
  // Keeps the reactor alive until gRPC is done with it.
  std::shared_ptr<Attempt> self_;
};

MessageWriter::MessageWriter(persistence_pb::ConversationService::Stub* stub,
                             BackendReadiness* readiness, Window window, DoneCallback done)
    : stub_(stub), readiness_(readiness), window_(window), done_(std::move(done)) {}

void MessageWriter::StartTurn(persistence_pb::AppendMessageRequest start, StartedCallback started,
                              absl::Duration answer_deadline, absl::Duration deadline,
                              const common::TraceContext& trace) {
  persistence_pb::StreamOpen open;
  open.set_user_id(start.user_id());  // The reply's id comes with the answer.
  {
    absl::MutexLock lock(&mutex_);
    start_ = std::move(start);
    started_ = std::move(started);
    starting_ = true;
    answer_deadline_ = answer_deadline;
  }
  Start(std::move(open), deadline, trace);
}

void MessageWriter::Start(persistence_pb::StreamOpen open, absl::Duration deadline,
                          const common::TraceContext& trace) {
  trace_ = trace;
  deadline_ = absl::Now() + deadline;
  {
    absl::MutexLock lock(&mutex_);
    self_ = shared_from_this();
    open_ = std::move(open);
    ArmStallCheck(absl::Now() + std::min(CheckTimeoutLocked(), StallTimeout()));
  }
  Connect();
}

absl::Duration MessageWriter::CheckTimeoutLocked() const {
  // Until the start is answered the stream stands for an AppendMessage, bounded as one is.
  return starting_ ? answer_deadline_ : StallTimeout();
}

absl::Duration MessageWriter::StallTimeout() const {
  // A zero readiness timeout (fail at once) must not make the check spin.
  return std::max(readiness_->timeout(), absl::Milliseconds(100));
}

bool MessageWriter::WaitingLocked() const {
  return starting_ || !unacked_.empty() || (finish_.has_value() && !finished_);
}

void MessageWriter::ArmStallCheck(absl::Time at) {
  spent_stall_alarm_ = std::move(stall_alarm_);
  stall_alarm_ = std::make_unique<grpc::Alarm>();
  stall_alarm_->Set(absl::ToChronoTime(at),
                    [weak = std::weak_ptr<MessageWriter>(shared_from_this())](bool fired) {
                      std::shared_ptr<MessageWriter> self = weak.lock();
                      if (fired && self != nullptr) {
                        self->OnStallCheck();
                      }
                    });
}

void MessageWriter::OnStallCheck() {
  std::shared_ptr<Attempt> stalled;
  {
    absl::MutexLock lock(&mutex_);
    if (done_reported_) {
      return;
    }
    const absl::Time now = absl::Now();
    const absl::Duration timeout = CheckTimeoutLocked();
    if (attempt_ != nullptr && WaitingLocked() && now - waiting_since_ >= timeout) {
      stalled = attempt_;
      stalled_ = stalled.get();
    }
    // Checked at least every StallTimeout(), so a start answered meanwhile does not delay the
    // next check of its reply's frames.
    const absl::Duration period = std::min(timeout, StallTimeout());
    ArmStallCheck(WaitingLocked() && waiting_since_ > now - timeout
                      ? std::min(waiting_since_ + timeout, now + period)
                      : now + period);
  }
  // Its end (cancelled, not by this writer's owner) is a broken stream: opened again, or given
  // up on past the readiness timeout.
  if (stalled != nullptr) {
    stalled->Cancel();
  }
}

void MessageWriter::Connect() {
  readiness_->WhenReady(
      [self = shared_from_this()](absl::Status ready) { self->OnReady(std::move(ready)); });
}

void MessageWriter::OnReady(absl::Status ready) {
  if (!ready.ok()) {
    return Done(std::move(ready));
  }
  std::shared_ptr<Attempt> attempt;
  {
    absl::MutexLock lock(&mutex_);
    if (!cancelled_) {
      // Everything not yet durable goes again; persistence skips what it had already stored.
      std::deque<persistence_pb::WriteMessageStreamRequest> frames;
      if (start_.has_value()) {
        *frames.emplace_back().mutable_start() = *std::move(start_);
        start_.reset();
      } else {
        *frames.emplace_back().mutable_open() = open_;
      }
      for (const persistence_pb::StreamDelta& delta : unacked_) {
        *frames.emplace_back().mutable_delta() = delta;
      }
      if (finish_.has_value()) {
        *frames.emplace_back().mutable_finish() = *finish_;
      }
      attempt = attempt_ = std::make_shared<Attempt>(shared_from_this(), std::move(frames));
      // A new stream's frames wait from the moment it opens.
      waiting_since_ = absl::Now();
    }
  }
  if (attempt == nullptr) {
    return Done(absl::CancelledError("the reply's write stream was cancelled"));
  }
  attempt->Start(stub_, deadline_, trace_);
}

void MessageWriter::Append(int64_t seq, std::string text) {
  std::optional<persistence_pb::WriteMessageStreamRequest> frame;
  std::shared_ptr<Attempt> attempt;
  {
    absl::MutexLock lock(&mutex_);
    if (finish_.has_value() || self_ == nullptr) {
      return;
    }
    frame = AddDeltaLocked(seq, std::move(text));
    attempt = attempt_;
  }
  // Appends come one at a time (from the turn's executor), so frames reach the stream in order.
  if (frame.has_value()) {
    attempt->Send(*std::move(frame));
  }
}

void MessageWriter::Finish(persistence_pb::MessageStatus status, std::string finish_reason,
                           int32_t prompt_tokens, int32_t completion_tokens) {
  std::optional<persistence_pb::WriteMessageStreamRequest> frame;
  std::shared_ptr<Attempt> attempt;
  {
    absl::MutexLock lock(&mutex_);
    if (finish_.has_value() || self_ == nullptr) {
      return;
    }
    frame = AddFinishLocked(status, std::move(finish_reason), prompt_tokens, completion_tokens);
    attempt = attempt_;
  }
  if (frame.has_value()) {
    attempt->Send(*std::move(frame));
  }
}

void MessageWriter::AppendLast(int64_t seq, std::string text, persistence_pb::MessageStatus status,
                               std::string finish_reason, int32_t prompt_tokens,
                               int32_t completion_tokens) {
  std::optional<persistence_pb::WriteMessageStreamRequest> delta;
  std::optional<persistence_pb::WriteMessageStreamRequest> finish;
  std::shared_ptr<Attempt> attempt;
  {
    absl::MutexLock lock(&mutex_);
    if (finish_.has_value() || self_ == nullptr) {
      return;
    }
    delta = AddDeltaLocked(seq, std::move(text));
    finish = AddFinishLocked(status, std::move(finish_reason), prompt_tokens, completion_tokens);
    attempt = attempt_;
  }
  if (delta.has_value()) {
    attempt->Send(*std::move(delta), /*more_follows=*/true);
    attempt->Send(*std::move(finish));
  }
}

std::optional<persistence_pb::WriteMessageStreamRequest> MessageWriter::AddDeltaLocked(
    int64_t seq, std::string text) {
  last_seq_ = seq;
  if (!WaitingLocked()) {
    waiting_since_ = absl::Now();
  }
  unacked_bytes_ += text.size();
  persistence_pb::StreamDelta& delta = unacked_.emplace_back();
  delta.set_seq(seq);
  delta.set_text(std::move(text));
  if (attempt_ == nullptr) {
    return std::nullopt;  // The next stream sends it.
  }
  persistence_pb::WriteMessageStreamRequest frame;
  *frame.mutable_delta() = delta;
  return frame;
}

std::optional<persistence_pb::WriteMessageStreamRequest> MessageWriter::AddFinishLocked(
    persistence_pb::MessageStatus status, std::string finish_reason, int32_t prompt_tokens,
    int32_t completion_tokens) {
  if (!WaitingLocked()) {
    waiting_since_ = absl::Now();
  }
  persistence_pb::StreamFinish& finish = finish_.emplace();
  finish.set_status(status);
  finish.set_finish_reason(std::move(finish_reason));
  finish.mutable_usage()->set_prompt_tokens(prompt_tokens);
  finish.mutable_usage()->set_completion_tokens(completion_tokens);
  if (attempt_ == nullptr) {
    return std::nullopt;
  }
  persistence_pb::WriteMessageStreamRequest frame;
  *frame.mutable_finish() = finish;
  return frame;
}

void MessageWriter::Cancel() {
  std::shared_ptr<Attempt> attempt;
  {
    absl::MutexLock lock(&mutex_);
    cancelled_ = true;
    attempt = attempt_;
  }
  // Without a stream, the wait for the channel ends in OnReady, which sees `cancelled_`.
  if (attempt != nullptr) {
    attempt->Cancel();
  }
}

size_t MessageWriter::pending() const {
  absl::MutexLock lock(&mutex_);
  return unacked_.size();
}

bool MessageWriter::HasRoomLocked() const {
  return unacked_.size() < window_.max_unacked_deltas && unacked_bytes_ < window_.max_unacked_bytes;
}

bool MessageWriter::HasRoom() const {
  absl::MutexLock lock(&mutex_);
  return HasRoomLocked();
}

bool MessageWriter::WhenRoom(std::function<void()> resume) {
  absl::MutexLock lock(&mutex_);
  // A writer that has ended holds nothing more: there is room.
  if (HasRoomLocked() || self_ == nullptr) {
    return true;
  }
  resume_ = std::move(resume);
  return false;
}

void MessageWriter::OnAck(const Attempt* attempt,
                          persistence_pb::WriteMessageStreamResponse& response) {
  std::function<void()> resume;
  StartedCallback started;
  persistence_pb::AppendMessageResponse answer;
  {
    absl::MutexLock lock(&mutex_);
    if (attempt != attempt_.get()) {
      return;
    }
    if (response.has_started() && starting_) {
      starting_ = false;
      started = std::move(started_);
      started_ = nullptr;
      answer = std::move(*response.mutable_started());
      if (answer.has_reply()) {
        open_.set_message_id(answer.reply().id());
      } else {
        done_ = nullptr;  // Nothing to stream: the stream ends, and the writer with it, quietly.
      }
    }
    // The stream works: a later break gets the whole readiness timeout again.
    give_up_at_.reset();
    waiting_since_ = absl::Now();
    durable_seq_ = std::max(durable_seq_, response.durable_seq());
    while (!unacked_.empty() && unacked_.front().seq() <= durable_seq_) {
      unacked_bytes_ -= unacked_.front().text().size();
      unacked_.pop_front();
    }
    if (response.finished()) {
      finished_ = true;
      sha256_ = response.sha256();
    }
    if (resume_ && HasRoomLocked()) {
      resume = std::move(resume_);
      resume_ = nullptr;
    }
  }
  if (started) {
    started(std::move(answer));
  }
  if (resume) {
    resume();
  }
}

void MessageWriter::OnAttemptDone(const Attempt* attempt, absl::Status status) {
  bool reconnect = false;
  bool check_finish = false;
  {
    absl::MutexLock lock(&mutex_);
    if (attempt != attempt_.get()) {
      return;
    }
    attempt_.reset();
    if (attempt == stalled_) {
      stalled_ = nullptr;
      status = starting_ ? absl::DeadlineExceededError(
                               absl::StrCat("persistence did not answer within ",
                                            absl::ToInt64Milliseconds(answer_deadline_), " ms"))
                         : absl::UnavailableError(
                               absl::StrCat("persistence acknowledged nothing for ",
                                            absl::ToInt64Milliseconds(StallTimeout()), " ms"));
    }
    // The message is no longer streaming when it is opened again: the `finish` a broken stream
    // carried may have been stored before its acknowledgement was lost.
    check_finish = reopened_ && finish_.has_value();
    reopened_ = true;
    // A stream that broke under the writer (persistence restarted, or ended it while draining)
    // is opened again; a refusal, a finished stream or a cancel is the end.
    const bool broken = status.code() == absl::StatusCode::kUnavailable ||
                        (status.code() == absl::StatusCode::kCancelled && !cancelled_);
    // Until the start is answered, the turn decides what a broken stream means.
    if (broken && !finished_ && !cancelled_ && !starting_) {
      const absl::Time now = absl::Now();
      if (!give_up_at_.has_value()) {
        give_up_at_ = now + readiness_->timeout();
      }
      reconnect = now < *give_up_at_;
    }
  }
  if (reconnect) {
    return Connect();
  }
  if (status.code() == absl::StatusCode::kFailedPrecondition && check_finish) {
    return CheckFinished(std::move(status));
  }
  Done(std::move(status));
}

void MessageWriter::CheckFinished(absl::Status refusal) {
  struct Call {
    grpc::ClientContext context;
    persistence_pb::GetMessageRequest request;
    persistence_pb::GetMessageResponse response;
  };
  auto call = std::make_shared<Call>();
  int64_t last_seq = 0;
  persistence_pb::MessageStatus finish_status;
  {
    absl::MutexLock lock(&mutex_);
    call->request.set_user_id(open_.user_id());
    call->request.set_message_id(open_.message_id());
    last_seq = last_seq_;
    finish_status = finish_->status();
  }
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  call->context.set_wait_for_ready(true);
  common::AttachTraceContext(call->context, trace_);
  stub_->async()->GetMessage(
      &call->context, &call->request, &call->response,
      [self = shared_from_this(), call, last_seq, finish_status,
       refusal = std::move(refusal)](grpc::Status status) mutable {
        const persistence_pb::Message& stored = call->response.message();
        if (status.ok() && stored.status() == finish_status && stored.last_seq() == last_seq) {
          absl::MutexLock lock(&self->mutex_);
          self->finished_ = true;
          self->durable_seq_ = last_seq;
          self->sha256_ = stored.sha256();
        }
        self->Done(std::move(refusal));
      });
}

void MessageWriter::Done(absl::Status status) {
  Result result;
  DoneCallback done;
  StartedCallback started;
  std::function<void()> resume;
  std::shared_ptr<MessageWriter> self;
  {
    absl::MutexLock lock(&mutex_);
    // A start never answered is reported to whoever waits for the answer, and only to them.
    started = std::move(started_);
    started_ = nullptr;
    starting_ = false;
    if (started) {
      done_ = nullptr;
    }
    resume = std::move(resume_);
    resume_ = nullptr;
    result.status = std::move(status);
    result.durable_seq = durable_seq_;
    result.finished = finished_;
    result.sha256 = sha256_;
    if (finished_) {
      result.status = absl::OkStatus();
    }
    done = std::move(done_);
    done_ = nullptr;
    done_reported_ = true;
    self = std::move(self_);
  }
  if (started) {
    started(result.status.ok() ? absl::InternalError("persistence ended the turn's stream without "
                                                     "answering its start")
                               : std::move(result.status));
  }
  if (done) {
    done(std::move(result));
  }
  if (resume) {
    resume();
  }
}

PersistenceClient::PersistenceClient(std::shared_ptr<grpc::Channel> channel,
                                     absl::Duration deadline, absl::Duration ready_timeout,
                                     MessageWriter::Window window)
    : channel_(std::move(channel)),
      stub_(persistence_pb::ConversationService::NewStub(channel_)),
      deadline_(deadline),
      readiness_(std::make_unique<BackendReadiness>(channel_, "persistence", ready_timeout)),
      window_(window) {}

void PersistenceClient::AppendMessage(persistence_pb::AppendMessageRequest request,
                                      const common::TraceContext& trace,
                                      Callback<persistence_pb::AppendMessageResponse> done,
                                      Admission admission) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::AppendMessageRequest* req,
              persistence_pb::AppendMessageResponse* resp, std::function<void(grpc::Status)> cb) {
        async->AppendMessage(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done), admission);
}

void PersistenceClient::ListMessages(persistence_pb::ListMessagesRequest request,
                                     const common::TraceContext& trace,
                                     Callback<persistence_pb::ListMessagesResponse> done,
                                     Admission admission) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::ListMessagesRequest* req,
              persistence_pb::ListMessagesResponse* resp, std::function<void(grpc::Status)> cb) {
        async->ListMessages(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done), admission);
}

void PersistenceClient::GetMessage(persistence_pb::GetMessageRequest request,
                                   const common::TraceContext& trace,
                                   Callback<persistence_pb::GetMessageResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::GetMessageRequest* req,
              persistence_pb::GetMessageResponse* resp, std::function<void(grpc::Status)> cb) {
        async->GetMessage(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

void PersistenceClient::GetConversation(persistence_pb::GetConversationRequest request,
                                        const common::TraceContext& trace,
                                        Callback<persistence_pb::GetConversationResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::GetConversationRequest* req,
              persistence_pb::GetConversationResponse* resp, std::function<void(grpc::Status)> cb) {
        async->GetConversation(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

void PersistenceClient::ListConversations(
    persistence_pb::ListConversationsRequest request, const common::TraceContext& trace,
    Callback<persistence_pb::ListConversationsResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::ListConversationsRequest* req,
              persistence_pb::ListConversationsResponse* resp,
              std::function<void(grpc::Status)> cb) {
        async->ListConversations(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

void PersistenceClient::UpdateConversation(
    persistence_pb::UpdateConversationRequest request, const common::TraceContext& trace,
    Callback<persistence_pb::UpdateConversationResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::UpdateConversationRequest* req,
              persistence_pb::UpdateConversationResponse* resp,
              std::function<void(grpc::Status)> cb) {
        async->UpdateConversation(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

void PersistenceClient::DeleteConversation(
    persistence_pb::DeleteConversationRequest request, const common::TraceContext& trace,
    Callback<persistence_pb::DeleteConversationResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::DeleteConversationRequest* req,
              persistence_pb::DeleteConversationResponse* resp,
              std::function<void(grpc::Status)> cb) {
        async->DeleteConversation(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

std::shared_ptr<WatchStream> PersistenceClient::Watch(persistence_pb::WatchMessageRequest request,
                                                      absl::Duration deadline,
                                                      const common::TraceContext& trace,
                                                      WatchStream::Callbacks callbacks) {
  auto* async = stub_->async();
  auto stream = std::make_shared<WatchStream>(
      [async](grpc::ClientContext* context, const persistence_pb::WatchMessageRequest* request,
              grpc::ClientReadReactor<persistence_pb::WatchMessageResponse>* reactor) {
        async->WatchMessage(context, request, reactor);
      },
      std::move(callbacks));
  stream->Start(std::move(request), deadline, trace, readiness_.get());
  return stream;
}

std::shared_ptr<ConversationWatchStream> PersistenceClient::WatchConversation(
    persistence_pb::WatchConversationRequest request, const common::TraceContext& trace,
    ConversationWatchStream::Callbacks callbacks) {
  auto* async = stub_->async();
  auto stream = std::make_shared<ConversationWatchStream>(
      [async](grpc::ClientContext* context, const persistence_pb::WatchConversationRequest* request,
              grpc::ClientReadReactor<persistence_pb::WatchConversationResponse>* reactor) {
        async->WatchConversation(context, request, reactor);
      },
      std::move(callbacks));
  // A watch lasts as long as someone here views the conversation; the deadline is only there
  // because a stream needs one.
  stream->Start(std::move(request), absl::Hours(24 * 365), trace, readiness_.get());
  return stream;
}

void PersistenceClient::PublishSignal(persistence_pb::PublishSignalRequest request,
                                      absl::Time deadline,
                                      Callback<persistence_pb::PublishSignalResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      *readiness_,
      [async](grpc::ClientContext* context, const persistence_pb::PublishSignalRequest* req,
              persistence_pb::PublishSignalResponse* resp, std::function<void(grpc::Status)> cb) {
        async->PublishSignal(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, common::NewTraceContext(), std::move(done), Admission::kNew,
      deadline);
}

std::shared_ptr<MessageWriter> PersistenceClient::OpenWriter(const std::string& user_id,
                                                             const std::string& message_id,
                                                             const common::TraceContext& trace,
                                                             MessageWriter::DoneCallback done) {
  auto writer =
      std::make_shared<MessageWriter>(stub_.get(), readiness_.get(), window_, std::move(done));
  persistence_pb::StreamOpen open;
  open.set_user_id(user_id);
  open.set_message_id(message_id);
  // A reply streams for as long as the model talks; the deadline only bounds a stuck stream.
  writer->Start(std::move(open), absl::Hours(1), trace);
  return writer;
}

std::shared_ptr<MessageWriter> PersistenceClient::StartTurn(
    persistence_pb::AppendMessageRequest request, const common::TraceContext& trace,
    MessageWriter::StartedCallback started, MessageWriter::DoneCallback done) {
  auto writer =
      std::make_shared<MessageWriter>(stub_.get(), readiness_.get(), window_, std::move(done));
  writer->StartTurn(std::move(request), std::move(started), deadline_, absl::Hours(1), trace);
  return writer;
}

bool PersistenceClient::IsStartRefused(const absl::Status& status) {
  // What a persistence that predates `start` answers it with.
  return status.code() == absl::StatusCode::kInvalidArgument &&
         status.message() == "the first frame must be open";
}

}  // namespace parley::edge
