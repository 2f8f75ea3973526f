#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/backend_readiness.h"
#include "edge/clients/read_stream.h"
#include "grpcpp/alarm.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"

namespace parley::edge {

namespace persistence_pb = ::parley::persistence::v1;

// Whether a call starts new work (persistence may shed it when overloaded) or continues work it
// already accepted (queued however long the queue).
enum class Admission { kNew, kContinuing };

// Streams one assistant message into persistence (WriteMessageStream): `open`,
// then deltas in order, then `finish`. Calls never block; frames are queued and
// written one at a time: a delta appended while nothing is being written goes out at once, and
// the deltas that queue up behind a write in flight go out together in the next one (one
// `deltas` message). Callbacks run on gRPC threads: consumers hand them to their own executor.
//
// A stream that breaks (persistence restarted or drained, a replica went away) does not lose
// the reply: every delta not yet acknowledged durable is kept, and once the channel is
// connected again (BackendReadiness) a new stream opens the message again and resends them,
// then `finish` if it was queued; persistence ignores the deltas it had already stored. The
// writer gives up only when persistence stays away past the readiness timeout, or refuses the
// message, and its Result says so.
//
// A stream whose frames go unacknowledged for the readiness timeout counts as broken too: a
// replica that hangs (stopped, or wedged) keeps its TCP connection and its HTTP/2 pings go
// unanswered only after keepalive's 15 s, twice over if the reconnect lands on the same
// connection; the client would wait half a minute to learn its reply is not stored.
class MessageWriter final : public std::enable_shared_from_this<MessageWriter> {
 public:
  struct Result {
    absl::Status status;      // Of the stream as a whole.
    int64_t durable_seq = 0;  // Highest sequence number acknowledged durable.
    bool finished = false;    // The `finish` frame was acknowledged.
    std::string sha256;       // With `finished`: the stored text's checksum.
  };
  using DoneCallback = std::function<void(Result)>;
  // Persistence's answer to a turn's start (see PersistenceClient::StartTurn), or why none came.
  using StartedCallback =
      std::function<void(absl::StatusOr<persistence_pb::AppendMessageResponse>)>;

  // How much of a reply may wait for persistence's durable acknowledgement before the writer is
  // full (HasRoom() false): a bound on what the edge holds of a reply while persistence is slow.
  struct Window {
    size_t max_unacked_deltas = 256;
    size_t max_unacked_bytes = 1 << 20;
  };

  // Use PersistenceClient::OpenWriter.
  MessageWriter(persistence_pb::ConversationService::Stub* stub, BackendReadiness* readiness,
                Window window, DoneCallback done);

  void Append(int64_t seq, std::string text);
  // Queues the last frame; the stream ends once it is acknowledged.
  void Finish(persistence_pb::MessageStatus status, std::string finish_reason,
              int32_t prompt_tokens, int32_t completion_tokens);
  // Append then Finish, for a reply whose end came with its last text: to a persistence that
  // takes it, both go in one message (a `last` frame).
  void AppendLast(int64_t seq, std::string text, persistence_pb::MessageStatus status,
                  std::string finish_reason, int32_t prompt_tokens, int32_t completion_tokens);
  // Abandons the stream (the stored message keeps its durable prefix).
  void Cancel();

  // Deltas not yet acknowledged durable.
  size_t pending() const;

  // False while the deltas not yet acknowledged durable fill the window: whoever appends should
  // stop pulling text until there is room again, as for a slow socket.
  bool HasRoom() const;
  // With room, returns true and drops `resume`. Without, keeps `resume` (replacing one kept
  // before) and returns false; it runs once, on a gRPC thread, when acknowledgements make room or
  // the writer ends.
  bool WhenRoom(std::function<void()> resume);

  void Start(persistence_pb::StreamOpen open, absl::Duration deadline,
             const common::TraceContext& trace);
  // Opens the stream with the turn's start instead (`start`, an AppendMessage with `turn`).
  // `answer_deadline` bounds the wait for its answer, as a unary call's deadline does.
  void StartTurn(persistence_pb::AppendMessageRequest start, StartedCallback started,
                 absl::Duration answer_deadline, absl::Duration deadline,
                 const common::TraceContext& trace);

 private:
  class Attempt;  // One WriteMessageStream call.

  // Record a delta and the finish; each returns the frame to send on `attempt_`, if there is
  // one (else the next stream sends what they recorded).
  std::optional<persistence_pb::WriteMessageStreamRequest> AddDeltaLocked(int64_t seq,
                                                                          std::string text)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  std::optional<persistence_pb::WriteMessageStreamRequest> AddFinishLocked(
      persistence_pb::MessageStatus status, std::string finish_reason, int32_t prompt_tokens,
      int32_t completion_tokens) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Opens a stream once the channel is connected.
  void Connect();
  void OnReady(absl::Status ready);
  void OnAck(const Attempt* attempt, persistence_pb::WriteMessageStreamResponse& response);
  void OnAttemptDone(const Attempt* attempt, absl::Status status);
  // After `refusal` of a stream opened again: ends as finished if persistence holds the message
  // ended as this writer's `finish` asked, with every delta, and with `refusal` otherwise.
  void CheckFinished(absl::Status refusal);
  // Reports the end, once; the writer may be destroyed after it.
  void Done(absl::Status status);
  // Checks, every readiness timeout until the end, that a stream with frames waiting got an
  // acknowledgement within it; cancels the stream that did not.
  void ArmStallCheck(absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void OnStallCheck();
  bool WaitingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Duration StallTimeout() const;
  // How long frames may wait for an answer: StallTimeout(), or the start's deadline.
  absl::Duration CheckTimeoutLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  bool HasRoomLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  persistence_pb::ConversationService::Stub* const stub_;
  BackendReadiness* const readiness_;
  const Window window_;
  common::TraceContext trace_;
  absl::Time deadline_;

  mutable absl::Mutex mutex_;
  DoneCallback done_ ABSL_GUARDED_BY(mutex_);
  persistence_pb::StreamOpen open_ ABSL_GUARDED_BY(mutex_);
  // With StartTurn: the start, sent by the first stream instead of `open_`, and who hears its
  // answer. Until the answer, a broken stream is the end (the turn decides what next), and once
  // the answer brings no reply the writer ends without reporting to `done_`.
  std::optional<persistence_pb::AppendMessageRequest> start_ ABSL_GUARDED_BY(mutex_);
  StartedCallback started_ ABSL_GUARDED_BY(mutex_);
  bool starting_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Duration answer_deadline_ ABSL_GUARDED_BY(mutex_);
  // Every delta after `durable_seq_`, in order: what a new stream resends.
  std::deque<persistence_pb::StreamDelta> unacked_ ABSL_GUARDED_BY(mutex_);
  size_t unacked_bytes_ ABSL_GUARDED_BY(mutex_) = 0;      // of their text
  std::function<void()> resume_ ABSL_GUARDED_BY(mutex_);  // see WhenRoom
  std::optional<persistence_pb::StreamFinish> finish_ ABSL_GUARDED_BY(mutex_);
  std::shared_ptr<Attempt> attempt_ ABSL_GUARDED_BY(mutex_);
  // Set when a stream broke and no later one got an acknowledgement: the writer gives up then.
  std::optional<absl::Time> give_up_at_ ABSL_GUARDED_BY(mutex_);
  // Since when the frames now waiting for an acknowledgement have waited without one.
  absl::Time waiting_since_ ABSL_GUARDED_BY(mutex_) = absl::InfiniteFuture();
  // The stream cancelled by the stall check, whose end is reported as persistence's silence.
  const Attempt* stalled_ ABSL_GUARDED_BY(mutex_) = nullptr;
  // The armed check, and the one whose callback armed it (an alarm is not re-armed or destroyed
  // from its own callback).
  std::unique_ptr<grpc::Alarm> stall_alarm_ ABSL_GUARDED_BY(mutex_);
  std::unique_ptr<grpc::Alarm> spent_stall_alarm_ ABSL_GUARDED_BY(mutex_);
  bool done_reported_ ABSL_GUARDED_BY(mutex_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mutex_) = false;
  // A stream ended, so the next one opens the message again.
  bool reopened_ ABSL_GUARDED_BY(mutex_) = false;
  int64_t last_seq_ ABSL_GUARDED_BY(mutex_) = 0;  // Of the last Append.
  int64_t durable_seq_ ABSL_GUARDED_BY(mutex_) = 0;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  std::string sha256_ ABSL_GUARDED_BY(mutex_);
  // Keeps the writer alive until it has reported its end.
  std::shared_ptr<MessageWriter> self_ ABSL_GUARDED_BY(mutex_);
};

// One WatchMessage call: replays a message's stored deltas after a sequence number, follows
// new ones as they become durable, then its final status; read an event at a time.
using WatchStream =
    ReadStream<persistence_pb::WatchMessageRequest, persistence_pb::WatchMessageResponse>;

// One WatchConversation call: `ready`, then what happens in the conversation, from every replica.
using ConversationWatchStream =
    ReadStream<persistence_pb::WatchConversationRequest, persistence_pb::WatchConversationResponse>;

// Asynchronous client of parley.persistence.v1.ConversationService. Every
// callback runs on a gRPC thread and must not block.
class PersistenceClient {
 public:
  // `deadline` bounds each unary call; every call first waits up to `ready_timeout` for the
  // channel to connect (see BackendReadiness).
  // `window` bounds each reply's writer (see MessageWriter::Window).
  explicit PersistenceClient(std::shared_ptr<grpc::Channel> channel,
                             absl::Duration deadline = absl::Seconds(10),
                             absl::Duration ready_timeout = absl::Seconds(5),
                             MessageWriter::Window window = {});

  template <class T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // `trace` is the turn's (or request's) trace context, propagated as `traceparent`. A call that
  // continues an acknowledged turn says so (`admission`), and persistence queues it rather than
  // shedding it (common/admission.h).
  void AppendMessage(persistence_pb::AppendMessageRequest request,
                     const common::TraceContext& trace,
                     Callback<persistence_pb::AppendMessageResponse> done,
                     Admission admission = Admission::kNew);
  void ListMessages(persistence_pb::ListMessagesRequest request, const common::TraceContext& trace,
                    Callback<persistence_pb::ListMessagesResponse> done,
                    Admission admission = Admission::kNew);

  void GetMessage(persistence_pb::GetMessageRequest request, const common::TraceContext& trace,
                  Callback<persistence_pb::GetMessageResponse> done);

  void GetConversation(persistence_pb::GetConversationRequest request,
                       const common::TraceContext& trace,
                       Callback<persistence_pb::GetConversationResponse> done);
  void ListConversations(persistence_pb::ListConversationsRequest request,
                         const common::TraceContext& trace,
                         Callback<persistence_pb::ListConversationsResponse> done);
  void UpdateConversation(persistence_pb::UpdateConversationRequest request,
                          const common::TraceContext& trace,
                          Callback<persistence_pb::UpdateConversationResponse> done);
  void DeleteConversation(persistence_pb::DeleteConversationRequest request,
                          const common::TraceContext& trace,
                          Callback<persistence_pb::DeleteConversationResponse> done);

  // Tails a message; `deadline` bounds the whole watch.
  std::shared_ptr<WatchStream> Watch(persistence_pb::WatchMessageRequest request,
                                     absl::Duration deadline, const common::TraceContext& trace,
                                     WatchStream::Callbacks callbacks);

  // Follows a conversation until cancelled (or the replica serving it goes away).
  std::shared_ptr<ConversationWatchStream> WatchConversation(
      persistence_pb::WatchConversationRequest request, const common::TraceContext& trace,
      ConversationWatchStream::Callbacks callbacks);
  // `deadline` bounds the whole publish, the wait for persistence included: a signal is worth
  // nothing later.
  void PublishSignal(persistence_pb::PublishSignalRequest request, absl::Time deadline,
                     Callback<persistence_pb::PublishSignalResponse> done);

  // Opens a write stream for an assistant message appended with status STREAMING.
  std::shared_ptr<MessageWriter> OpenWriter(const std::string& user_id,
                                            const std::string& message_id,
                                            const common::TraceContext& trace,
                                            MessageWriter::DoneCallback done);

  // A chat turn's start and its reply's stream in one WriteMessageStream call: `request` is the
  // AppendMessage (with `turn`) that stores the user message and opens the reply. `started`
  // runs once, on a gRPC thread, with persistence's answer. When the answer has a `reply`, the
  // writer streams it from there on (Append, Finish) and `done` reports its end; otherwise, or
  // when `started` gets an error instead, the writer has ended and `done` never runs. A
  // persistence that predates the start refuses it: IsStartRefused(status) says so, and the
  // caller uses AppendMessage and OpenWriter instead.
  std::shared_ptr<MessageWriter> StartTurn(persistence_pb::AppendMessageRequest request,
                                           const common::TraceContext& trace,
                                           MessageWriter::StartedCallback started,
                                           MessageWriter::DoneCallback done);
  static bool IsStartRefused(const absl::Status& status);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // How long a call waits for persistence to be connected.
  absl::Duration ready_timeout() const { return readiness_->timeout(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<persistence_pb::ConversationService::Stub> stub_;
  absl::Duration deadline_;
  std::unique_ptr<BackendReadiness> readiness_;
  MessageWriter::Window window_;
};

}  // namespace parley::edge
