#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "parley/inference/v1/inference_service.grpc.pb.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"

namespace parley::edge::testing {

namespace inference_pb = ::parley::inference::v1;
namespace persistence_pb = ::parley::persistence::v1;

// An in-memory ConversationService with just enough behaviour for the edge:
// append (idempotent on client id), list, and the streaming write.
class FakePersistence final : public persistence_pb::ConversationService::CallbackService {
 public:
  // Forgets everything stored and every configured failure.
  void Reset();
  // Every AppendMessage fails with this status while it is not OK.
  void FailAppends(absl::Status status);
  // Whether AppendMessage honours `turn` (opens the reply, returns the history) and a write
  // stream its `start`, as a current persistence does; off (after Reset too), AppendMessage
  // ignores `turn` and a stream refuses `start`, as a persistence that predates them.
  void StartTurns(bool start);
  // Whether a write stream takes a `last` frame and its acknowledgements say so, as a current
  // persistence does; off (after Reset too), as one that predates it, which refuses the frame.
  void TakeLast(bool take);
  // How many AppendMessage and ListMessages calls arrived since Reset; a write stream's `start`
  // counts as an AppendMessage (and in `write_starts`).
  struct Calls {
    int append_message = 0;
    int list_messages = 0;
    int write_starts = 0;
    int history_continued = 0;  // turns answered with their new message alone
  };
  Calls CallsSeen();
  // Stores a message as if a previous turn had.
  std::string Seed(const std::string& user_id, const std::string& conversation_id,
                   persistence_pb::Role role, const std::string& content);
  std::vector<persistence_pb::Message> Messages(const std::string& conversation_id);
  // For every frame of a write stream that carried text, in arrival order: how many deltas it
  // carried (a `delta` frame counts 1, a `deltas` frame its size).
  std::vector<int> DeltasPerFrame();
  // Waits up to `timeout` until `count` frames carrying text have arrived.
  bool AwaitDeltaFrames(size_t count, absl::Duration timeout);
  // Every write stream frame after the first, by kind ("delta", "deltas", "finish", "last"), in
  // arrival order.
  std::vector<std::string> FrameKinds();

  grpc::ServerUnaryReactor* AppendMessage(grpc::CallbackServerContext* context,
                                          const persistence_pb::AppendMessageRequest* request,
                                          persistence_pb::AppendMessageResponse* response) override;
  grpc::ServerUnaryReactor* ListMessages(grpc::CallbackServerContext* context,
                                         const persistence_pb::ListMessagesRequest* request,
                                         persistence_pb::ListMessagesResponse* response) override;
  grpc::ServerBidiReactor<persistence_pb::WriteMessageStreamRequest,
                          persistence_pb::WriteMessageStreamResponse>*
  WriteMessageStream(grpc::CallbackServerContext* context) override;

 private:
  friend class WriteReactor;
  // AppendMessage's work, for the call and for a stream's `start`.
  grpc::Status Append(const persistence_pb::AppendMessageRequest& request,
                      persistence_pb::AppendMessageResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  bool TakesLast();
  // A write stream's `start`: refused unless StartTurns.
  grpc::Status Start(const persistence_pb::AppendMessageRequest& request,
                     persistence_pb::AppendMessageResponse* response);
  struct Stored {
    std::string user_id;
    persistence_pb::Message message;
  };
  // Applies one stream frame; returns the acknowledgement to send.
  persistence_pb::WriteMessageStreamResponse Apply(
      const std::string& user_id, const std::string& message_id,
      const persistence_pb::WriteMessageStreamRequest& frame);

  absl::Mutex mutex_;
  std::vector<Stored> messages_ ABSL_GUARDED_BY(mutex_);
  std::vector<int> deltas_per_frame_ ABSL_GUARDED_BY(mutex_);
  absl::Status append_status_ ABSL_GUARDED_BY(mutex_);
  bool start_turns_ ABSL_GUARDED_BY(mutex_) = false;
  bool take_last_ ABSL_GUARDED_BY(mutex_) = false;
  std::vector<std::string> frame_kinds_ ABSL_GUARDED_BY(mutex_);
  Calls calls_ ABSL_GUARDED_BY(mutex_);
  int next_id_ ABSL_GUARDED_BY(mutex_) = 1;
};

class GenerateReactor;

// An InferenceService that replies with a scripted list of text deltas, then
// usage and finish, or fails after them with `fail_with`. Like the real one, it puts usage and
// finish in `end` on the last delta for a caller that accepts it.
class FakeInference final : public inference_pb::InferenceService::CallbackService {
 public:
  struct Script {
    std::vector<std::string> deltas = {"Hel", "lo", " there"};
    absl::Status fail_with;  // OK: finish normally.
    // Answers as a service that predates `end`: usage and finish as chunks of their own.
    bool predates_end = false;
    // After its last chunk a call that succeeds waits for ReleaseHeldCalls (or its cancel)
    // before it ends OK, as a status still on its way would.
    bool hold_status = false;
  };
  void SetScript(Script script);
  // Back to the default script, with no requests seen.
  void Reset();
  std::vector<inference_pb::GenerateRequest> Requests();
  // Ends every call that hold_status keeps waiting, OK.
  void ReleaseHeldCalls();

  grpc::ServerWriteReactor<inference_pb::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const inference_pb::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const inference_pb::ListModelsRequest* request,
                                       inference_pb::ListModelsResponse* response) override;

 private:
  friend class GenerateReactor;
  void Hold(GenerateReactor* call);
  // True if `call` was held (it is no longer).
  bool Unhold(GenerateReactor* call);

  absl::Mutex mutex_;
  Script script_ ABSL_GUARDED_BY(mutex_);
  std::vector<inference_pb::GenerateRequest> requests_ ABSL_GUARDED_BY(mutex_);
  std::vector<GenerateReactor*> held_ ABSL_GUARDED_BY(mutex_);
};

// Both fakes behind one in-process server on a free port.
struct FakeBackends {
  FakeBackends();
  ~FakeBackends();
  FakePersistence persistence;
  FakeInference inference;
  std::unique_ptr<grpc::Server> server;
  std::string address;  // "127.0.0.1:PORT"
};

}  // namespace parley::edge::testing
