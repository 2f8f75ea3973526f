#include "tests/edge/fake_backends.h"

#include <algorithm>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace parley::edge::testing {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace

void FakePersistence::Reset() {
  absl::MutexLock lock(&mutex_);
  messages_.clear();
  deltas_per_frame_.clear();
  frame_kinds_.clear();
  append_status_ = absl::OkStatus();
  start_turns_ = false;
  take_last_ = false;
  calls_ = {};
}

void FakePersistence::StartTurns(bool start) {
  absl::MutexLock lock(&mutex_);
  start_turns_ = start;
}

void FakePersistence::TakeLast(bool take) {
  absl::MutexLock lock(&mutex_);
  take_last_ = take;
}

bool FakePersistence::TakesLast() {
  absl::MutexLock lock(&mutex_);
  return take_last_;
}

std::vector<std::string> FakePersistence::FrameKinds() {
  absl::MutexLock lock(&mutex_);
  return frame_kinds_;
}

FakePersistence::Calls FakePersistence::CallsSeen() {
  absl::MutexLock lock(&mutex_);
  return calls_;
}

std::vector<int> FakePersistence::DeltasPerFrame() {
  absl::MutexLock lock(&mutex_);
  return deltas_per_frame_;
}

bool FakePersistence::AwaitDeltaFrames(size_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return deltas_per_frame_.size() >= count;
  };
  return mutex_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
}

void FakePersistence::FailAppends(absl::Status status) {
  absl::MutexLock lock(&mutex_);
  append_status_ = std::move(status);
}

std::string FakePersistence::Seed(const std::string& user_id, const std::string& conversation_id,
                                  persistence_pb::Role role, const std::string& content) {
  absl::MutexLock lock(&mutex_);
  Stored stored{user_id, {}};
  stored.message.set_id(absl::StrCat("m", next_id_++));
  stored.message.set_conversation_id(conversation_id);
  stored.message.set_role(role);
  stored.message.set_content(content);
  stored.message.set_status(persistence_pb::MESSAGE_STATUS_COMPLETE);
  messages_.push_back(stored);
  return stored.message.id();
}

std::vector<persistence_pb::Message> FakePersistence::Messages(const std::string& conversation_id) {
  absl::MutexLock lock(&mutex_);
  std::vector<persistence_pb::Message> out;
  for (const Stored& stored : messages_) {
    if (stored.message.conversation_id() == conversation_id) {
      out.push_back(stored.message);
    }
  }
  return out;
}

grpc::ServerUnaryReactor* FakePersistence::AppendMessage(
    grpc::CallbackServerContext* context, const persistence_pb::AppendMessageRequest* request,
    persistence_pb::AppendMessageResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::MutexLock lock(&mutex_);
  reactor->Finish(Append(*request, response));
  return reactor;
}

grpc::Status FakePersistence::Start(const persistence_pb::AppendMessageRequest& request,
                                    persistence_pb::AppendMessageResponse* response) {
  absl::MutexLock lock(&mutex_);
  if (!start_turns_) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first frame must be open");
  }
  ++calls_.write_starts;
  return Append(request, response);
}

grpc::Status FakePersistence::Append(const persistence_pb::AppendMessageRequest& request,
                                     persistence_pb::AppendMessageResponse* response) {
  ++calls_.append_message;
  if (!append_status_.ok()) {
    return ToGrpc(append_status_);
  }
  std::string conversation_id = request.conversation_id();
  if (conversation_id.empty()) {
    // Parley's form of id: 32 lowercase hex digits.
    conversation_id = absl::StrFormat("%032x", next_id_++);
  } else {
    const bool owned = std::any_of(messages_.begin(), messages_.end(), [&](const Stored& s) {
      return s.message.conversation_id() == conversation_id && s.user_id == request.user_id();
    });
    if (!owned) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such conversation");
    }
  }
  Stored stored{request.user_id(), {}};
  persistence_pb::Message& message = stored.message;
  message.set_id(absl::StrCat("m", next_id_++));
  message.set_conversation_id(conversation_id);
  message.set_parent_id(request.parent_id());
  message.set_role(request.role());
  message.set_content(request.content());
  message.set_model(request.model());
  message.set_client_message_id(request.client_message_id());
  message.set_status(request.status() == persistence_pb::MESSAGE_STATUS_UNSPECIFIED
                         ? persistence_pb::MESSAGE_STATUS_COMPLETE
                         : request.status());
  messages_.push_back(stored);
  *response->mutable_message() = message;
  response->set_created(true);
  if (start_turns_ && request.has_turn()) {
    Stored reply{request.user_id(), {}};
    reply.message.set_id(absl::StrCat("m", next_id_++));
    reply.message.set_conversation_id(conversation_id);
    reply.message.set_parent_id(message.id());
    reply.message.set_role(persistence_pb::ROLE_ASSISTANT);
    reply.message.set_model(request.turn().reply_model());
    reply.message.set_client_message_id(
        absl::StrCat(request.turn().reply_client_message_id_prefix(), message.id()));
    reply.message.set_status(persistence_pb::MESSAGE_STATUS_STREAMING);
    // The conversation's newest messages, this one last (the fake keeps no branches).
    std::vector<const persistence_pb::Message*> history;
    for (const Stored& earlier : messages_) {
      if (earlier.message.conversation_id() == conversation_id) {
        history.push_back(&earlier.message);
      }
    }
    // A caller that holds the branch up to the message before this one gets this one alone.
    const std::string& known_leaf = request.turn().known_branch_leaf_id();
    if (!known_leaf.empty() && request.parent_id().empty() && history.size() >= 2 &&
        history[history.size() - 2]->id() == known_leaf) {
      ++calls_.history_continued;
      response->set_history_continues(true);
      history.erase(history.begin(), history.end() - 1);
    }
    const size_t page =
        request.turn().history_page_size() > 0 ? request.turn().history_page_size() : 100;
    for (size_t i = history.size() > page ? history.size() - page : 0; i < history.size(); ++i) {
      *response->add_history() = *history[i];
    }
    messages_.push_back(reply);
    *response->mutable_reply() = reply.message;
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* FakePersistence::ListMessages(
    grpc::CallbackServerContext* context, const persistence_pb::ListMessagesRequest* request,
    persistence_pb::ListMessagesResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::MutexLock lock(&mutex_);
  ++calls_.list_messages;
  std::vector<const persistence_pb::Message*> found;
  for (const Stored& stored : messages_) {
    if (stored.message.conversation_id() == request->conversation_id() &&
        stored.user_id == request->user_id()) {
      found.push_back(&stored.message);
    }
  }
  if (found.empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such conversation"));
    return reactor;
  }
  const size_t page = request->page_size() > 0 ? request->page_size() : 100;
  const size_t first = request->newest() && found.size() > page ? found.size() - page : 0;
  for (size_t i = first; i < found.size() && i < first + page; ++i) {
    *response->add_messages() = *found[i];
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

persistence_pb::WriteMessageStreamResponse FakePersistence::Apply(
    const std::string& user_id, const std::string& message_id,
    const persistence_pb::WriteMessageStreamRequest& frame) {
  absl::MutexLock lock(&mutex_);
  persistence_pb::WriteMessageStreamResponse ack;
  ack.set_takes_last(take_last_);
  frame_kinds_.push_back(frame.has_delta()    ? "delta"
                         : frame.has_deltas() ? "deltas"
                         : frame.has_finish() ? "finish"
                         : frame.has_last()   ? "last"
                                              : "other");
  for (Stored& stored : messages_) {
    if (stored.message.id() != message_id || stored.user_id != user_id) {
      continue;
    }
    persistence_pb::Message& message = stored.message;
    auto apply = [&](const persistence_pb::StreamDelta& delta) {
      if (delta.seq() == message.last_seq() + 1) {
        message.set_content(message.content() + delta.text());
        message.set_last_seq(delta.seq());
      }
    };
    if (frame.has_delta()) {
      deltas_per_frame_.push_back(1);
      apply(frame.delta());
    }
    if (frame.has_deltas()) {
      deltas_per_frame_.push_back(frame.deltas().deltas_size());
      for (const persistence_pb::StreamDelta& delta : frame.deltas().deltas()) {
        apply(delta);
      }
    }
    if (frame.has_last()) {
      deltas_per_frame_.push_back(frame.last().deltas_size());
      for (const persistence_pb::StreamDelta& delta : frame.last().deltas()) {
        apply(delta);
      }
    }
    const persistence_pb::StreamFinish* finish = frame.has_finish() ? &frame.finish()
                                                 : frame.has_last() ? &frame.last().finish()
                                                                    : nullptr;
    if (finish != nullptr) {
      message.set_status(finish->status());
      message.set_finish_reason(finish->finish_reason());
      *message.mutable_usage() = finish->usage();
      ack.set_finished(true);
    }
    ack.set_durable_seq(message.last_seq());
  }
  return ack;
}

// Acknowledges every frame as soon as it is applied, one write at a time.
class WriteReactor final
    : public grpc::ServerBidiReactor<persistence_pb::WriteMessageStreamRequest,
                                     persistence_pb::WriteMessageStreamResponse> {
 public:
  explicit WriteReactor(FakePersistence* owner) : owner_(owner) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mutex_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    if (request_.has_last() && !owner_->TakesLast()) {
      // What a persistence that predates the frame sees: a frame of no kind it knows.
      absl::MutexLock lock(&mutex_);
      ending_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty frame");
      reads_done_ = true;
      WriteNextLocked();
      return;
    }
    if (request_.has_start()) {
      persistence_pb::WriteMessageStreamResponse answer;
      answer.set_takes_last(owner_->TakesLast());
      const grpc::Status status = owner_->Start(request_.start(), answer.mutable_started());
      absl::MutexLock lock(&mutex_);
      if (!status.ok() || !answer.started().has_reply()) {
        // Refused, or nothing to stream: the stream ends (after the answer, if any).
        ending_ = status;
        reads_done_ = true;
        if (status.ok()) {
          acks_.push_back(std::move(answer));
        }
        WriteNextLocked();
        return;
      }
      user_id_ = request_.start().user_id();
      message_id_ = answer.started().reply().id();
      acks_.push_back(std::move(answer));
      WriteNextLocked();
    } else if (request_.has_open()) {
      user_id_ = request_.open().user_id();
      message_id_ = request_.open().message_id();
    } else {
      Enqueue(owner_->Apply(user_id_, message_id_, request_));
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool /*ok*/) override {
    absl::MutexLock lock(&mutex_);
    acks_.pop_front();
    writing_ = false;
    WriteNextLocked();
  }

  void OnDone() override { delete this; }

 private:
  void Enqueue(persistence_pb::WriteMessageStreamResponse ack) {
    absl::MutexLock lock(&mutex_);
    acks_.push_back(std::move(ack));
    WriteNextLocked();
  }
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (writing_) {
      return;
    }
    if (acks_.empty()) {
      MaybeFinishLocked();
      return;
    }
    writing_ = true;
    StartWrite(&acks_.front());
  }
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (reads_done_ && !writing_ && acks_.empty() && !finished_) {
      finished_ = true;
      Finish(ending_);
    }
  }

  FakePersistence* const owner_;
  persistence_pb::WriteMessageStreamRequest request_;
  std::string user_id_;
  std::string message_id_;
  absl::Mutex mutex_;
  std::deque<persistence_pb::WriteMessageStreamResponse> acks_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  grpc::Status ending_ ABSL_GUARDED_BY(mutex_);  // how the stream ends
};

grpc::ServerBidiReactor<persistence_pb::WriteMessageStreamRequest,
                        persistence_pb::WriteMessageStreamResponse>*
FakePersistence::WriteMessageStream(grpc::CallbackServerContext* /*context*/) {
  return new WriteReactor(this);
}

void FakeInference::Reset() {
  ReleaseHeldCalls();
  absl::MutexLock lock(&mutex_);
  script_ = Script();
  requests_.clear();
}

void FakeInference::SetScript(Script script) {
  absl::MutexLock lock(&mutex_);
  script_ = std::move(script);
}

std::vector<inference_pb::GenerateRequest> FakeInference::Requests() {
  absl::MutexLock lock(&mutex_);
  return requests_;
}

// Writes the scripted chunks one after another, then finishes.
class GenerateReactor final : public grpc::ServerWriteReactor<inference_pb::GenerateResponse> {
 public:
  GenerateReactor(FakeInference* owner, const FakeInference::Script& script, bool accepts_end)
      : owner_(owner), status_(script.fail_with), hold_status_(script.hold_status) {
    for (const std::string& delta : script.deltas) {
      chunks_.emplace_back().mutable_text_delta()->set_text(delta);
    }
    if (status_.ok()) {
      inference_pb::Usage usage;
      usage.set_prompt_tokens(5);
      usage.set_completion_tokens(static_cast<int32_t>(script.deltas.size()));
      inference_pb::Finish finish;
      finish.set_reason(inference_pb::FINISH_REASON_STOP);
      if (accepts_end && !script.predates_end) {
        inference_pb::GenerateResponse& last =
            chunks_.empty() ? chunks_.emplace_back() : chunks_.back();
        *last.mutable_end()->mutable_usage() = usage;
        *last.mutable_end()->mutable_finish() = finish;
      } else {
        *chunks_.emplace_back().mutable_usage() = usage;
        *chunks_.emplace_back().mutable_finish() = finish;
      }
    }
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    chunks_.pop_front();
    WriteNext();
  }

  void OnCancel() override {
    if (owner_->Unhold(this)) {
      Finish(grpc::Status::CANCELLED);
    }
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (chunks_.empty()) {
      if (hold_status_ && status_.ok()) {
        owner_->Hold(this);  // Ended by FakeInference::ReleaseHeldCalls or OnCancel.
        return;
      }
      Finish(ToGrpc(status_));
      return;
    }
    StartWrite(&chunks_.front());
  }

  FakeInference* const owner_;
  std::deque<inference_pb::GenerateResponse> chunks_;
  absl::Status status_;
  const bool hold_status_;
};

void FakeInference::Hold(GenerateReactor* call) {
  absl::MutexLock lock(&mutex_);
  held_.push_back(call);
}

bool FakeInference::Unhold(GenerateReactor* call) {
  absl::MutexLock lock(&mutex_);
  auto it = std::find(held_.begin(), held_.end(), call);
  if (it == held_.end()) {
    return false;
  }
  held_.erase(it);
  return true;
}

void FakeInference::ReleaseHeldCalls() {
  absl::MutexLock lock(&mutex_);
  // Finished under the lock, so that no OnCancel finishes one of them too.
  for (GenerateReactor* call : held_) {
    call->Finish(grpc::Status::OK);
  }
  held_.clear();
}

grpc::ServerWriteReactor<inference_pb::GenerateResponse>* FakeInference::Generate(
    grpc::CallbackServerContext* /*context*/, const inference_pb::GenerateRequest* request) {
  absl::MutexLock lock(&mutex_);
  requests_.push_back(*request);
  return new GenerateReactor(this, script_, request->accepts_end());
}

grpc::ServerUnaryReactor* FakeInference::ListModels(grpc::CallbackServerContext* context,
                                                    const inference_pb::ListModelsRequest*,
                                                    inference_pb::ListModelsResponse* response) {
  inference_pb::Model* other = response->add_models();
  other->set_name("other-model");
  inference_pb::Model* model = response->add_models();
  model->set_name("fake-model");
  model->set_is_default(true);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

FakeBackends::FakeBackends() {
  // Readiness checks ask grpc.health.v1; the default service answers SERVING.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&persistence);
  builder.RegisterService(&inference);
  server = builder.BuildAndStart();
  address = absl::StrCat("127.0.0.1:", port);
}

FakeBackends::~FakeBackends() { server->Shutdown(); }

}  // namespace parley::edge::testing
