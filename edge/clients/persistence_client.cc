#include "edge/clients/persistence_client.h"

#include <utility>

#include "absl/time/clock.h"
#include "edge/clients/grpc_status.h"

namespace parley::edge {
namespace {

// One unary call: owns what gRPC needs until the callback has run.
template <class Request, class Response>
struct UnaryCall {
  grpc::ClientContext context;
  Request request;
  Response response;
};

template <class Request, class Response, class Method>
void CallUnary(Method method, Request request, absl::Duration deadline,
               const common::TraceContext& trace, PersistenceClient::Callback<Response> done) {
  auto call = std::make_shared<UnaryCall<Request, Response>>();
  call->request = std::move(request);
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  common::AttachTraceContext(call->context, trace);
  method(&call->context, &call->request, &call->response,
         [call, done = std::move(done)](grpc::Status status) {
           if (!status.ok()) {
             done(ToAbslStatus(status));
             return;
           }
           done(std::move(call->response));
         });
}

}  // namespace

MessageWriter::MessageWriter(persistence_pb::ConversationService::Stub* stub, DoneCallback done)
    : stub_(stub), done_(std::move(done)) {}

void MessageWriter::Start(persistence_pb::StreamOpen open, absl::Duration deadline,
                          const common::TraceContext& trace) {
  self_ = shared_from_this();
  context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  common::AttachTraceContext(context_, trace);
  stub_->async()->WriteMessageStream(&context_, this);
  AddHold();
  persistence_pb::WriteMessageStreamRequest frame;
  *frame.mutable_open() = std::move(open);
  Enqueue(std::move(frame));
  StartRead(&response_);
  StartCall();
}

void MessageWriter::Append(int64_t seq, std::string text) {
  persistence_pb::WriteMessageStreamRequest frame;
  frame.mutable_delta()->set_seq(seq);
  frame.mutable_delta()->set_text(std::move(text));
  Enqueue(std::move(frame));
}

void MessageWriter::Finish(persistence_pb::MessageStatus status, std::string finish_reason,
                           int32_t prompt_tokens, int32_t completion_tokens) {
  persistence_pb::WriteMessageStreamRequest frame;
  persistence_pb::StreamFinish* finish = frame.mutable_finish();
  finish->set_status(status);
  finish->set_finish_reason(std::move(finish_reason));
  finish->mutable_usage()->set_prompt_tokens(prompt_tokens);
  finish->mutable_usage()->set_completion_tokens(completion_tokens);
  Enqueue(std::move(frame));
}

void MessageWriter::Cancel() { context_.TryCancel(); }

size_t MessageWriter::pending() const {
  absl::MutexLock lock(&mutex_);
  return queue_.size();
}

void MessageWriter::Enqueue(persistence_pb::WriteMessageStreamRequest frame) {
  bool release = false;
  {
    absl::MutexLock lock(&mutex_);
    if (broken_ || finish_queued_) {
      return;
    }
    finish_queued_ = frame.has_finish();
    queue_.push_back(std::move(frame));
    release = WriteNextLocked();
  }
  if (release) {
    RemoveHold();
  }
}

bool MessageWriter::WriteNextLocked() {
  if (writing_ || hold_released_) {
    return false;
  }
  if (broken_) {
    hold_released_ = true;
    return true;
  }
  if (queue_.empty()) {
    if (finish_queued_) {
      // Everything including `finish` is written: half-close and let the
      // final acknowledgement and status arrive.
      writing_ = true;
      StartWritesDone();
    }
    return false;
  }
  in_flight_ = std::move(queue_.front());
  queue_.pop_front();
  writing_ = true;
  StartWrite(&in_flight_);
  return false;
}

void MessageWriter::OnWriteDone(bool ok) {
  bool release = false;
  {
    absl::MutexLock lock(&mutex_);
    writing_ = false;
    if (!ok) {
      broken_ = true;
      queue_.clear();
    }
    release = WriteNextLocked();
  }
  if (release) {
    RemoveHold();
  }
}

void MessageWriter::OnWritesDoneDone(bool /*ok*/) {
  {
    absl::MutexLock lock(&mutex_);
    hold_released_ = true;
  }
  RemoveHold();
}

void MessageWriter::OnReadDone(bool ok) {
  if (!ok) {
    // The server ended the stream; stop writing and let OnDone report why.
    bool release = false;
    {
      absl::MutexLock lock(&mutex_);
      broken_ = true;
      queue_.clear();
      release = WriteNextLocked();
    }
    if (release) {
      RemoveHold();
    }
    return;
  }
  {
    absl::MutexLock lock(&mutex_);
    durable_seq_ = std::max(durable_seq_, response_.durable_seq());
    if (response_.finished()) {
      finished_ = true;
      sha256_ = response_.sha256();
    }
  }
  StartRead(&response_);
}

void MessageWriter::OnDone(const grpc::Status& status) {
  Result result;
  result.status = ToAbslStatus(status);
  {
    absl::MutexLock lock(&mutex_);
    result.durable_seq = durable_seq_;
    result.finished = finished_;
    result.sha256 = sha256_;
  }
  DoneCallback done = std::move(done_);
  if (done) {
    done(std::move(result));
  }
  // Last line: may destroy this.
  self_.reset();
}

PersistenceClient::PersistenceClient(std::shared_ptr<grpc::Channel> channel,
                                     absl::Duration deadline)
    : channel_(std::move(channel)),
      stub_(persistence_pb::ConversationService::NewStub(channel_)),
      deadline_(deadline) {}

void PersistenceClient::AppendMessage(persistence_pb::AppendMessageRequest request,
                                      const common::TraceContext& trace,
                                      Callback<persistence_pb::AppendMessageResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      [async](grpc::ClientContext* context, const persistence_pb::AppendMessageRequest* req,
              persistence_pb::AppendMessageResponse* resp, std::function<void(grpc::Status)> cb) {
        async->AppendMessage(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

void PersistenceClient::ListMessages(persistence_pb::ListMessagesRequest request,
                                     const common::TraceContext& trace,
                                     Callback<persistence_pb::ListMessagesResponse> done) {
  auto* async = stub_->async();
  CallUnary(
      [async](grpc::ClientContext* context, const persistence_pb::ListMessagesRequest* req,
              persistence_pb::ListMessagesResponse* resp, std::function<void(grpc::Status)> cb) {
        async->ListMessages(context, req, resp, std::move(cb));
      },
      std::move(request), deadline_, trace, std::move(done));
}

void PersistenceClient::GetMessage(persistence_pb::GetMessageRequest request,
                                   const common::TraceContext& trace,
                                   Callback<persistence_pb::GetMessageResponse> done) {
  auto* async = stub_->async();
  CallUnary(
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
  stream->Start(std::move(request), deadline, trace);
  return stream;
}

std::shared_ptr<MessageWriter> PersistenceClient::OpenWriter(const std::string& user_id,
                                                             const std::string& message_id,
                                                             const common::TraceContext& trace,
                                                             MessageWriter::DoneCallback done) {
  auto writer = std::make_shared<MessageWriter>(stub_.get(), std::move(done));
  persistence_pb::StreamOpen open;
  open.set_user_id(user_id);
  open.set_message_id(message_id);
  // A reply streams for as long as the model talks; the deadline only bounds a stuck stream.
  writer->Start(std::move(open), absl::Hours(1), trace);
  return writer;
}

}  // namespace parley::edge
