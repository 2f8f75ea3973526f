#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/read_stream.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"

namespace parley::edge {

namespace persistence_pb = ::parley::persistence::v1;

// Streams one assistant message into persistence (WriteMessageStream): `open`,
// then deltas in order, then `finish`. Calls never block; frames are queued and
// written one at a time. Callbacks run on gRPC threads: consumers hand them to
// their own executor.
class MessageWriter final
    : public grpc::ClientBidiReactor<persistence_pb::WriteMessageStreamRequest,
                                     persistence_pb::WriteMessageStreamResponse>,
      public std::enable_shared_from_this<MessageWriter> {
 public:
  struct Result {
    absl::Status status;      // Of the stream as a whole.
    int64_t durable_seq = 0;  // Highest sequence number acknowledged durable.
    bool finished = false;    // The `finish` frame was acknowledged.
    std::string sha256;       // With `finished`: the stored text's checksum.
  };
  using DoneCallback = std::function<void(Result)>;

  // Use PersistenceClient::OpenWriter.
  MessageWriter(persistence_pb::ConversationService::Stub* stub, DoneCallback done);

  void Append(int64_t seq, std::string text);
  // Queues the last frame; the stream ends once it is acknowledged.
  void Finish(persistence_pb::MessageStatus status, std::string finish_reason,
              int32_t prompt_tokens, int32_t completion_tokens);
  // Abandons the stream (the stored message keeps its durable prefix).
  void Cancel();

  // Frames queued but not yet written.
  size_t pending() const;

  void Start(persistence_pb::StreamOpen open, absl::Duration deadline,
             const common::TraceContext& trace);

 private:
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  void Enqueue(persistence_pb::WriteMessageStreamRequest frame);
  // Starts the next write if none is in flight; returns true if the hold must be released.
  bool WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  persistence_pb::ConversationService::Stub* const stub_;
  DoneCallback done_;
  grpc::ClientContext context_;
  persistence_pb::WriteMessageStreamResponse response_;

  mutable absl::Mutex mutex_;
  std::deque<persistence_pb::WriteMessageStreamRequest> queue_ ABSL_GUARDED_BY(mutex_);
  persistence_pb::WriteMessageStreamRequest in_flight_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finish_queued_ ABSL_GUARDED_BY(mutex_) = false;
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;
  // The hold keeps OnDone away while frames may still be written.
  bool hold_released_ ABSL_GUARDED_BY(mutex_) = false;
  int64_t durable_seq_ ABSL_GUARDED_BY(mutex_) = 0;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  std::string sha256_ ABSL_GUARDED_BY(mutex_);
  // Keeps the reactor alive until gRPC is done with it.
  std::shared_ptr<MessageWriter> self_;
};

// One WatchMessage call: replays a message's stored deltas after a sequence number, follows
// new ones as they become durable, then its final status; read an event at a time.
using WatchStream =
    ReadStream<persistence_pb::WatchMessageRequest, persistence_pb::WatchMessageResponse>;

// Asynchronous client of parley.persistence.v1.ConversationService. Every
// callback runs on a gRPC thread and must not block.
class PersistenceClient {
 public:
  explicit PersistenceClient(std::shared_ptr<grpc::Channel> channel,
                             absl::Duration deadline = absl::Seconds(10));

  template <class T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // `trace` is the turn's (or request's) trace context, propagated as `traceparent`.
  void AppendMessage(persistence_pb::AppendMessageRequest request,
                     const common::TraceContext& trace,
                     Callback<persistence_pb::AppendMessageResponse> done);
  void ListMessages(persistence_pb::ListMessagesRequest request, const common::TraceContext& trace,
                    Callback<persistence_pb::ListMessagesResponse> done);

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

  // Opens a write stream for an assistant message appended with status STREAMING.
  std::shared_ptr<MessageWriter> OpenWriter(const std::string& user_id,
                                            const std::string& message_id,
                                            const common::TraceContext& trace,
                                            MessageWriter::DoneCallback done);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<persistence_pb::ConversationService::Stub> stub_;
  absl::Duration deadline_;
};

}  // namespace parley::edge
