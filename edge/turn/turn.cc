#include "edge/turn/turn.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "common/log.h"
#include "edge/turn/conversation_names.h"
#include "edge/turn/history.h"
#include "edge/turn/resume.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;

inference_pb::Role ToInferenceRole(persistence_pb::Role role) {
  switch (role) {
    case persistence_pb::ROLE_SYSTEM:
      return inference_pb::ROLE_SYSTEM;
    case persistence_pb::ROLE_ASSISTANT:
      return inference_pb::ROLE_ASSISTANT;
    default:
      return inference_pb::ROLE_USER;
  }
}

std::string FinishReasonName(inference_pb::FinishReason reason) {
  switch (reason) {
    case inference_pb::FINISH_REASON_LENGTH:
      return "length";
    case inference_pb::FINISH_REASON_CONTENT_FILTER:
      return "content_filter";
    case inference_pb::FINISH_REASON_TOOL_CALLS:
      return "tool_calls";
    default:
      return "stop";
  }
}

// A storage failure as the client sees it: its own mistakes are named, the rest is "unavailable".
ErrorCode StorageErrorCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ErrorCode::kNotFound;
    case absl::StatusCode::kInvalidArgument:
      return ErrorCode::kInvalidFrame;
    default:
      return ErrorCode::kStorageUnavailable;
  }
}

// A reply's idempotency key is this followed by the id of the user message it answers.
constexpr absl::string_view kReplyKeyPrefix = "reply:";

double Seconds(Turn::Clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// Drops all but the newest `count` messages of a branch (oldest first).
void KeepNewest(std::vector<persistence_pb::Message>& branch, int count) {
  const size_t keep = static_cast<size_t>(count);
  if (branch.size() > keep) {
    branch.erase(branch.begin(), branch.end() - static_cast<ptrdiff_t>(keep));
  }
}

}  // namespace

std::string ConversationTitle(absl::string_view first_message) {
  constexpr size_t kTitleBytes = 60;
  std::string title(absl::StripAsciiWhitespace(first_message));
  std::replace_if(
      title.begin(), title.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
  if (title.size() <= kTitleBytes) {
    return title;
  }
  size_t cut = kTitleBytes;
  while (cut > 0 && (static_cast<unsigned char>(title[cut]) & 0xC0) == 0x80) {
    --cut;  // Inside a multi-byte character.
  }
  if (const size_t space = title.rfind(' ', cut); space != std::string::npos && space > cut / 2) {
    cut = space;
  }
  title.resize(cut);
  return absl::StrCat(absl::StripTrailingAsciiWhitespace(title), "…");
}

template <class F>
auto Turn::OnExecutor(F f) {
  return [self = shared_from_this(), f = std::move(f)](auto&&... args) mutable {
    net::post(self->executor_,
              [self, f = std::move(f), ... args = std::forward<decltype(args)>(args)]() mutable {
                f(self.get(), std::move(args)...);
              });
  };
}

std::shared_ptr<Turn> Turn::Start(const TurnDeps& deps, net::any_io_executor executor,
                                  std::weak_ptr<EventSink> sink, std::string user_id,
                                  SendMessage message, Clock::time_point received, TurnSlot slot,
                                  common::TraceContext trace, uint64_t connection) {
  auto turn = std::make_shared<Turn>(deps, std::move(executor), std::move(sink), std::move(user_id),
                                     std::move(message), received, std::move(trace));
  turn->slot_ = std::move(slot);
  turn->connection_ = connection;
  std::weak_ptr<Turn> weak = turn;
  turn->tracker_key_ = deps.tracker->Add([weak] {
    if (auto turn = weak.lock()) {
      turn->Cancel();
    }
  });
  net::post(turn->executor_, [turn] {
    if (!turn->message_.regenerates_message_id.empty()) {
      return turn->LoadNamedMessage(turn->message_.regenerates_message_id, "regenerate",
                                    &Turn::AnswerAgain);
    }
    if (!turn->message_.replaces_message_id.empty()) {
      return turn->LoadNamedMessage(turn->message_.replaces_message_id, "edit", &Turn::StoreEdit);
    }
    turn->StoreUserMessage(turn->message_.conversation_id, turn->message_.parent_id,
                           /*no_parent=*/false);
  });
  return turn;
}

Turn::Turn(const TurnDeps& deps, net::any_io_executor executor, std::weak_ptr<EventSink> sink,
           std::string user_id, SendMessage message, Clock::time_point received,
           common::TraceContext trace)
    : deps_(deps),
      executor_(std::move(executor)),
      sink_(std::move(sink)),
      user_id_(std::move(user_id)),
      message_(std::move(message)),
      received_(received),
      trace_(std::move(trace)) {}

void Turn::Cancel(bool notify) {
  net::post(executor_, [self = shared_from_this(), notify] {
    self->notify_cancel_ = self->notify_cancel_ || notify;
    if (self->ended_ || self->cancelled_ || self->engine_finished_) {
      return;  // An ended or whole reply has nothing left to cancel.
    }
    self->cancelled_ = true;
    if (self->generate_ != nullptr) {
      // The stream ends with CANCELLED and OnGenerateDone closes the stored message.
      self->generate_->Cancel();
    }
  });
}

void Turn::Emit(Event event, std::optional<Clock::time_point> arrival) {
  // A dropped connection does not stop the turn; its events just go nowhere.
  if (!std::holds_alternative<Ack>(event) && !std::holds_alternative<ErrorEvent>(event)) {
    ShowViewers(event);
  }
  if (IsClientConversationName(message_.conversation_id)) {
    // The client hears of the conversation by the name it gave it, not by its stored id.
    RenameConversation(event, message_.conversation_id);
  }
  if (std::shared_ptr<EventSink> sink = sink_.lock()) {
    sink->Emit(std::move(event), arrival);
  }
}

void Turn::ShowViewers(const Event& event) {
  if (deps_.rooms == nullptr || conversation_id_.empty()) {
    return;
  }
  if (room_ != nullptr && room_->retired()) {
    room_.reset();
  }
  if (room_ == nullptr) {
    const uint64_t generation = deps_.rooms->generation();
    if (generation == room_generation_) {
      return;  // No room was made since the last look: still nobody views the conversation.
    }
    room_generation_ = generation;
    room_ = deps_.rooms->Find(user_id_, conversation_id_);
    if (room_ == nullptr) {
      return;
    }
  }
  room_->Relay(connection_, event, conversation_id_);
}

void Turn::LoadNamedMessage(const std::string& message_id, absl::string_view action,
                            void (Turn::*then)(const persistence_pb::Message&)) {
  persistence_pb::GetMessageRequest request;
  request.set_user_id(user_id_);
  request.set_message_id(message_id);
  deps_.persistence->GetMessage(
      std::move(request), trace_,
      OnExecutor([action = std::string(action), then](
                     Turn* self, absl::StatusOr<persistence_pb::GetMessageResponse> response) {
        if (!response.ok()) {
          self->Fail(StorageErrorCode(response.status()),
                     absl::StrCat("cannot ", action, ": ", response.status().message()));
          return;
        }
        (self->*then)(response->message());
      }));
}

void Turn::AnswerAgain(const persistence_pb::Message& stored) {
  // A reply is regenerated by answering its user message again.
  const bool is_reply = stored.role() == persistence_pb::ROLE_ASSISTANT;
  if (!is_reply && stored.role() != persistence_pb::ROLE_USER) {
    return Fail(ErrorCode::kInvalidFrame, "only replies and user messages regenerate");
  }
  if (is_reply && stored.parent_id().empty()) {
    return Fail(ErrorCode::kInvalidFrame, "this reply answers no message");
  }
  conversation_id_ = stored.conversation_id();
  user_message_id_ = is_reply ? stored.parent_id() : stored.id();
  Emit(Ack{message_.id, conversation_id_, user_message_id_});
  LoadHistory();
}

void Turn::StoreEdit(const persistence_pb::Message& edited) {
  if (edited.role() != persistence_pb::ROLE_USER) {
    return Fail(ErrorCode::kInvalidFrame, "only user messages can be edited");
  }
  // The new text becomes a sibling of the old: same parent, or a second root.
  StoreUserMessage(edited.conversation_id(), edited.parent_id(),
                   /*no_parent=*/edited.parent_id().empty());
}

void Turn::StoreUserMessage(const std::string& conversation_id, const std::string& parent_id,
                            bool no_parent) {
  persistence_pb::AppendMessageRequest request;
  request.set_user_id(user_id_);
  if (IsClientConversationName(conversation_id)) {
    // Persistence finds the user's conversation of this name, or creates it with this message.
    request.set_client_conversation_id(conversation_id);
  } else {
    request.set_conversation_id(conversation_id);
  }
  request.set_parent_id(parent_id);
  request.set_no_parent(no_parent);
  if (!IsParleyConversationId(conversation_id)) {
    request.set_conversation_title(ConversationTitle(message_.content));
  }
  request.set_role(persistence_pb::ROLE_USER);
  request.set_content(message_.content);
  request.set_client_message_id(message_.id);
  request.set_model(message_.model);
  request.set_status(persistence_pb::MESSAGE_STATUS_COMPLETE);
  if (deps_.rooms != nullptr) {
    // Viewers here hear of it from this turn, not again from its stored event, whichever of the
    // two comes first.
    request.set_origin(deps_.rooms->origin());
  }
  // A new conversation's metadata is stored between the message and its acknowledgement, and a
  // model not known yet takes a call to inference: such turns store, list and open their reply
  // one call at a time. Any other asks persistence to do all three at once (`turn`); one that
  // predates it answers as before, without the reply, and the turn goes on one call at a time.
  const bool stores_metadata =
      message_.conversation_id.empty() && !message_.conversation_metadata.empty();
  if (std::optional<std::string> model =
          stores_metadata ? std::nullopt
                          : deps_.inference->KnownModel(message_.model, message_.unknown_model);
      model.has_value()) {
    model_ = *std::move(model);
    persistence_pb::TurnStart& turn = *request.mutable_turn();
    turn.set_history_page_size(deps_.history_messages);
    turn.set_reply_model(model_);
    turn.set_reply_client_message_id_prefix(std::string(kReplyKeyPrefix));
    HeldBranch* held = deps_.held_branch.get();
    if (held != nullptr && !held->messages.empty() && held->conversation_id == conversation_id &&
        parent_id.empty() && !no_parent) {
      // Taken, so that a turn beside this one reads its branch from persistence.
      branch_ = std::move(held->messages);
      held->messages.clear();
      turn.set_known_branch_leaf_id(branch_.back().id());
    }
  }
  if (!request.has_turn()) {
    return AppendUserMessage(std::move(request));
  }
  // The turn's start and its reply's stream take one call; a persistence that predates that is
  // asked the older way.
  persistence_pb::AppendMessageRequest unstarted = request;
  writer_ = deps_.persistence->StartTurn(
      std::move(request), trace_,
      OnExecutor(
          [unstarted = std::move(unstarted)](
              Turn* self, absl::StatusOr<persistence_pb::AppendMessageResponse> response) mutable {
            if (!response.ok() || !response->has_reply()) {
              self->writer_.reset();  // It has ended.
            }
            if (!response.ok() && PersistenceClient::IsStartRefused(response.status())) {
              return self->AppendUserMessage(std::move(unstarted));
            }
            self->OnUserMessageAnswer(std::move(response));
          }),
      OnExecutor([](Turn* self, MessageWriter::Result result) { self->OnWriterDone(result); }));
}

void Turn::AppendUserMessage(persistence_pb::AppendMessageRequest request) {
  deps_.persistence->AppendMessage(
      std::move(request), trace_,
      OnExecutor([](Turn* self, absl::StatusOr<persistence_pb::AppendMessageResponse> response) {
        self->OnUserMessageAnswer(std::move(response));
      }));
}

void Turn::OnUserMessageAnswer(absl::StatusOr<persistence_pb::AppendMessageResponse> response) {
  if (!response.ok()) {
    return Fail(StorageErrorCode(response.status()),
                absl::StrCat("cannot store the message: ", response.status().message()));
  }
  conversation_id_ = response->message().conversation_id();
  user_message_id_ = response->message().id();
  if (IsClientConversationName(message_.conversation_id) && deps_.rooms != nullptr) {
    // Connections that joined the name before the conversation existed see this turn.
    deps_.rooms->Named(user_id_, message_.conversation_id, conversation_id_);
  }
  if (!response->created()) {
    Emit(Ack{message_.id, conversation_id_, user_message_id_});
    // The client sent this message before (a retry after a reconnect): answer with the reply it
    // already has instead of generating another.
    return FindExistingReply();
  }
  const bool new_conversation = message_.conversation_id.empty();
  if (new_conversation && !message_.conversation_metadata.empty()) {
    return StoreConversationMetadata(response->message());
  }
  if (response->has_reply()) {
    return OnTurnStarted(*std::move(response));
  }
  OnUserMessageStored(response->message());
}

void Turn::OnTurnStarted(persistence_pb::AppendMessageResponse stored) {
  // What OnUserMessageStored, LoadHistory and OpenAssistantMessage do, from one answer.
  Acknowledge(stored.message());
  if (stored.history_continues()) {
    history_ = std::move(branch_);
  }
  history_.insert(history_.end(), std::make_move_iterator(stored.mutable_history()->begin()),
                  std::make_move_iterator(stored.mutable_history()->end()));
  KeepNewest(history_, deps_.history_messages);
  branch_.clear();
  AnnounceReply(stored.reply());
  // A turn cancelled meanwhile still has a reply stored, opened: StartStreams stops the model at
  // once, and the reply ends cancelled, empty, as it does when cancelled before the first token.
  StartStreams();
}

void Turn::StoreConversationMetadata(const persistence_pb::Message& stored) {
  persistence_pb::UpdateConversationRequest request;
  request.set_user_id(user_id_);
  request.mutable_conversation()->set_id(conversation_id_);
  for (const auto& [key, value] : message_.conversation_metadata) {
    (*request.mutable_conversation()->mutable_metadata())[key] = value;
  }
  request.mutable_update_mask()->add_paths("metadata");
  deps_.persistence->UpdateConversation(
      std::move(request), trace_,
      OnExecutor([stored](Turn* self,
                          absl::StatusOr<persistence_pb::UpdateConversationResponse> response) {
        if (!response.ok()) {
          self->Fail(StorageErrorCode(response.status()),
                     absl::StrCat("cannot store the conversation's metadata: ",
                                  response.status().message()));
          return;
        }
        self->OnUserMessageStored(stored);
      }));
}

void Turn::OnUserMessageStored(const persistence_pb::Message& stored) {
  Acknowledge(stored);
  LoadHistory();
}

void Turn::Acknowledge(const persistence_pb::Message& stored) {
  // Acknowledged once everything the message brought is stored.
  HistoryMessage message = ToHistoryMessage(stored);
  Emit(Ack{message_.id, conversation_id_, user_message_id_, message.created_at});
  ShowViewers(MessageAdded{conversation_id_, std::move(message)});
}

void Turn::AnnounceReply(const persistence_pb::Message& reply) {
  assistant_message_id_ = reply.id();
  Emit(StreamStart{conversation_id_, assistant_message_id_, reply.model(),
                   ToHistoryMessage(reply).created_at});
}

void Turn::FindExistingReply() {
  persistence_pb::ListMessagesRequest request;
  request.set_user_id(user_id_);
  request.set_conversation_id(conversation_id_);
  request.set_page_size(kRepliesSearched);
  request.set_newest(true);
  deps_.persistence->ListMessages(
      std::move(request), trace_,
      OnExecutor([](Turn* self, absl::StatusOr<persistence_pb::ListMessagesResponse> response) {
        if (!response.ok()) {
          self->Fail(StorageErrorCode(response.status()),
                     absl::StrCat("cannot load the conversation: ", response.status().message()));
          return;
        }
        for (const persistence_pb::Message& stored : response->messages()) {
          if (stored.parent_id() == self->user_message_id_ &&
              stored.role() == persistence_pb::ROLE_ASSISTANT) {
            self->AnnounceReply(stored);
            return self->FollowExistingReply();
          }
        }
        // The first attempt stored the message but never got to open a reply: answer it now.
        self->LoadHistory();
      }),
      Admission::kContinuing);
}

void Turn::FollowExistingReply() {
  ResumeReply(*deps_.persistence, *deps_.tracker, executor_, sink_, user_id_, assistant_message_id_,
              /*after_seq=*/0, /*announce=*/false, trace_);
  // The first attempt's turn is the one counted in the metrics.
  End("");
}

void Turn::LoadHistory() {
  if (cancelled_) {
    return End("cancelled");
  }
  persistence_pb::ListMessagesRequest request;
  request.set_user_id(user_id_);
  request.set_conversation_id(conversation_id_);
  // The branch that leads to this message is the context, not other edits' branches.
  request.set_leaf_message_id(user_message_id_);
  request.set_page_size(deps_.history_messages);
  request.set_newest(true);
  deps_.persistence->ListMessages(
      std::move(request), trace_,
      OnExecutor([](Turn* self, absl::StatusOr<persistence_pb::ListMessagesResponse> response) {
        if (!response.ok()) {
          self->Fail(StorageErrorCode(response.status()),
                     absl::StrCat("cannot load the conversation: ", response.status().message()));
          return;
        }
        self->history_.assign(response->messages().begin(), response->messages().end());
        self->ResolveModel();
      }),
      Admission::kContinuing);
}

void Turn::ResolveModel() {
  if (std::optional<std::string> known =
          deps_.inference->KnownModel(message_.model, message_.unknown_model)) {
    model_ = *std::move(known);
    return OpenAssistantMessage();
  }
  // The stored message and stream_start name the model that actually answers.
  deps_.inference->ResolveModel(
      message_.model, message_.unknown_model,
      OnExecutor([](Turn* self, absl::StatusOr<std::string> model) {
        if (!model.ok()) {
          self->Fail(ErrorCode::kInferenceUnavailable,
                     absl::StrCat("cannot reach inference: ", model.status().message()));
          return;
        }
        self->model_ = *model;
        self->OpenAssistantMessage();
      }));
}

void Turn::OpenAssistantMessage() {
  if (cancelled_) {
    return End("cancelled");
  }
  persistence_pb::AppendMessageRequest request;
  request.set_user_id(user_id_);
  request.set_conversation_id(conversation_id_);
  request.set_parent_id(user_message_id_);
  request.set_role(persistence_pb::ROLE_ASSISTANT);
  request.set_model(model_);
  request.set_status(persistence_pb::MESSAGE_STATUS_STREAMING);
  // The reply is idempotent too, so two attempts of one request never generate twice, even when
  // the second arrives (on any edge) before the first has opened its reply: whichever comes
  // second finds the reply stored and follows it. A regenerate's own id keys its reply, since
  // it answers a message that already has one.
  request.set_client_message_id(message_.regenerates_message_id.empty()
                                    ? absl::StrCat(kReplyKeyPrefix, user_message_id_)
                                    : message_.id);
  if (deps_.rooms != nullptr) {
    request.set_origin(deps_.rooms->origin());
  }
  deps_.persistence->AppendMessage(
      std::move(request), trace_,
      OnExecutor([](Turn* self, absl::StatusOr<persistence_pb::AppendMessageResponse> response) {
        if (!response.ok()) {
          self->Fail(StorageErrorCode(response.status()),
                     absl::StrCat("cannot store the reply: ", response.status().message()));
          return;
        }
        self->AnnounceReply(response->message());
        if (!response->created()) {
          return self->FollowExistingReply();
        }
        self->StartStreams();
      }),
      Admission::kContinuing);
}

void Turn::StartStreams() {
  inference_pb::GenerateRequest request;
  request.set_model(model_);
  request.set_user_id(user_id_);
  request.set_request_id(assistant_message_id_);
  const Sampling& sampling = message_.sampling;
  if (sampling.temperature.has_value()) {
    request.mutable_sampling()->set_temperature(*sampling.temperature);
  }
  if (sampling.top_p.has_value()) {
    request.mutable_sampling()->set_top_p(*sampling.top_p);
  }
  if (sampling.max_tokens.has_value()) {
    request.mutable_sampling()->set_max_tokens(*sampling.max_tokens);
  }
  for (const std::string& stop : sampling.stop) {
    request.mutable_sampling()->add_stop(stop);
  }
  if (!message_.system_context.empty()) {
    inference_pb::ChatMessage* system = request.add_messages();
    system->set_role(inference_pb::ROLE_SYSTEM);
    system->set_content(message_.system_context);
  }
  bool has_new_message = false;
  for (const persistence_pb::Message& stored : history_) {
    // Failed or empty replies carry no context worth sending.
    if (stored.content().empty() || stored.id() == assistant_message_id_) {
      continue;
    }
    inference_pb::ChatMessage* out = request.add_messages();
    out->set_role(ToInferenceRole(stored.role()));
    out->set_content(stored.content());
    has_new_message = has_new_message || stored.id() == user_message_id_;
  }
  // Kept only while it can become the connection's held branch: when it ends with this message.
  if (deps_.held_branch != nullptr && !history_.empty() &&
      history_.back().id() == user_message_id_) {
    branch_ = std::move(history_);
  }
  if (!has_new_message && !message_.content.empty()) {
    inference_pb::ChatMessage* out = request.add_messages();
    out->set_role(inference_pb::ROLE_USER);
    out->set_content(message_.content);
  }
  history_.clear();

  if (writer_ == nullptr) {  // Else the turn's start opened it.
    writer_ = deps_.persistence->OpenWriter(
        user_id_, assistant_message_id_, trace_,
        OnExecutor([](Turn* self, MessageWriter::Result result) { self->OnWriterDone(result); }));
  }
  // A client's deadline counts from its message's arrival; inference gets what is left of it as
  // the call's deadline and cuts the engine's upstream request when it passes.
  absl::Duration deadline = deps_.generate_deadline;
  if (message_.deadline_ms > 0) {
    const Clock::time_point due =
        received_ +
        std::chrono::milliseconds(std::min<int64_t>(
            message_.deadline_ms, absl::ToInt64Milliseconds(deps_.max_client_deadline)));
    deadline = std::max(absl::Milliseconds(1), absl::FromChrono(due - Clock::now()));
  }
  generate_ = deps_.inference->Generate(
      std::move(request), deadline, trace_,
      GenerateStream::Callbacks{
          .on_message =
              [self = shared_from_this()](inference_pb::GenerateResponse chunk) {
                const Clock::time_point arrival = Clock::now();
                net::post(self->executor_, [self, chunk = std::move(chunk), arrival]() mutable {
                  self->OnChunk(std::move(chunk), arrival);
                });
              },
          .on_done = OnExecutor(
              [](Turn* self, absl::Status status) { self->OnGenerateDone(std::move(status)); }),
      });
  if (cancelled_) {
    generate_->Cancel();
  }
  ScheduleHeartbeat();
}

void Turn::ScheduleHeartbeat() {
  if (deps_.heartbeat_interval <= absl::ZeroDuration()) {
    return;
  }
  if (heartbeat_ == nullptr) {
    heartbeat_ = std::make_unique<net::steady_timer>(executor_);
  }
  heartbeat_->expires_after(absl::ToChronoMilliseconds(deps_.heartbeat_interval));
  heartbeat_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->ended_ || self->seq_ > 0) {
      return;
    }
    self->Emit(Heartbeat{self->assistant_message_id_});
    self->ScheduleHeartbeat();
  });
}

void Turn::OnChunk(inference_pb::GenerateResponse chunk, Clock::time_point arrival) {
  std::optional<std::string> stored;  // This chunk's delta, for persistence.
  switch (chunk.chunk_case()) {
    case inference_pb::GenerateResponse::kTextDelta: {
      if (chunk.text_delta().text().empty()) {
        break;
      }
      ++seq_;
      if (seq_ == 1) {
        if (heartbeat_ != nullptr) {
          heartbeat_->cancel();
        }
        deps_.metrics->time_to_first_token.Observe(Seconds(arrival - received_));
      } else if (last_chunk_.has_value()) {
        deps_.metrics->inter_token_gap.Observe(Seconds(arrival - *last_chunk_));
      }
      last_chunk_ = arrival;
      deps_.metrics->tokens_total.Increment();
      stored = chunk.text_delta().text();
      text_ += chunk.text_delta().text();
      Emit(StreamToken{assistant_message_id_, seq_,
                       std::move(*chunk.mutable_text_delta()->mutable_text())},
           arrival);
      break;
    }
    // An inference service that predates `end` sends these as chunks of their own.
    case inference_pb::GenerateResponse::kUsage:
      OnUsage(chunk.usage());
      break;
    case inference_pb::GenerateResponse::kFinish:
      OnFinish(chunk.finish());
      break;
    case inference_pb::GenerateResponse::kReasoningDelta:
      if (!chunk.reasoning_delta().text().empty()) {
        Emit(StreamReasoning{assistant_message_id_,
                             std::move(*chunk.mutable_reasoning_delta()->mutable_text())},
             arrival);
      }
      break;
    default:
      break;
  }
  if (chunk.has_end()) {
    if (chunk.end().has_usage()) {
      OnUsage(chunk.end().usage());
    }
    if (chunk.end().has_finish()) {
      OnFinish(chunk.end().finish());
    }
  }
  if (engine_finished_ && !writer_done_) {
    // The reply's end is known with its last text: both are stored in one message.
    const std::string reason = finish_reason_.empty() ? "stop" : finish_reason_;
    if (stored.has_value()) {
      writer_->AppendLast(seq_, *std::move(stored), persistence_pb::MESSAGE_STATUS_COMPLETE, reason,
                          prompt_tokens_, completion_tokens_);
    } else {
      writer_->Finish(persistence_pb::MESSAGE_STATUS_COMPLETE, reason, prompt_tokens_,
                      completion_tokens_);
    }
  } else if (stored.has_value()) {
    writer_->Append(seq_, *std::move(stored));
  }
  PullNext();
}

void Turn::OnUsage(const inference_pb::Usage& usage) {
  prompt_tokens_ = usage.prompt_tokens();
  completion_tokens_ = usage.completion_tokens();
}

void Turn::OnFinish(const inference_pb::Finish& finish) {
  finish_reason_ = FinishReasonName(finish.reason());
  engine_finished_ = true;
}

void Turn::PullNext() {
  if (generate_ == nullptr || generate_done_) {
    return;
  }
  // Pull the next chunk only when the client can take it and persistence keeps up: this is
  // what lets gRPC flow control slow the engine down for a slow reader or a slow store, and
  // bounds what the edge holds of the reply meanwhile.
  std::shared_ptr<EventSink> sink = sink_.lock();
  if (sink != nullptr && !sink->Writable()) {
    sink->WhenWritable([self = shared_from_this()] {
      net::dispatch(self->executor_, [self] { self->PullNext(); });
    });
    return;
  }
  if (writer_ != nullptr && !writer_done_ && !writer_->WhenRoom([self = shared_from_this()] {
        net::post(self->executor_, [self] { self->PullNext(); });
      })) {
    return;
  }
  generate_->ReadNext();
}

void Turn::OnGenerateDone(absl::Status status) {
  generate_done_ = true;
  // After the finish, a cancel or deadline came too late to cut the reply: it is stored whole.
  inference_status_ = engine_finished_ ? absl::OkStatus() : status;
  if (writer_done_ || engine_finished_) {
    return MaybeFinish();
  }
  if (status.ok()) {
    writer_->Finish(persistence_pb::MESSAGE_STATUS_COMPLETE,
                    finish_reason_.empty() ? "stop" : finish_reason_, prompt_tokens_,
                    completion_tokens_);
  } else if (cancelled_) {
    writer_->Finish(persistence_pb::MESSAGE_STATUS_CANCELLED, "cancelled", prompt_tokens_,
                    completion_tokens_);
  } else if (PastClientDeadline()) {
    writer_->Finish(persistence_pb::MESSAGE_STATUS_INTERRUPTED,
                    std::string(ErrorCodeName(ErrorCode::kDeadlineExceeded)), prompt_tokens_,
                    completion_tokens_);
  } else {
    // The stored finish reason is the error code the client is told, never the status text:
    // gRPC's (e.g. "failed to connect to all addresses; last error: …") is longer than persistence
    // stores, and refusing it would turn the model's fault into one of storage.
    writer_->Finish(persistence_pb::MESSAGE_STATUS_INTERRUPTED,
                    std::string(ErrorCodeName(ErrorCode::kInferenceUnavailable)), prompt_tokens_,
                    completion_tokens_);
  }
}

void Turn::OnWriterDone(MessageWriter::Result result) {
  writer_done_ = true;
  writer_result_ = std::move(result);
  if (!generate_done_) {
    if (!engine_finished_) {
      // Persistence gave up mid-stream: a reply that cannot be stored is not worth generating.
      generate_->Cancel();
    }
    return;
  }
  MaybeFinish();
}

void Turn::MaybeFinish() {
  if (!generate_done_ || !writer_done_) {
    return;
  }
  // Free the user's turn before the client hears the reply ended: its next message may arrive
  // on another connection's thread before this one gets to End().
  slot_.Release();
  if (!writer_result_.status.ok() || !writer_result_.finished) {
    const std::string reason = writer_result_.status.ok()
                                   ? std::string("the write stream ended early")
                                   : std::string(writer_result_.status.message());
    return Fail(ErrorCode::kStorageUnavailable, absl::StrCat("cannot store the reply: ", reason));
  }
  if (cancelled_) {
    if (notify_cancel_) {
      Emit(StreamCancelled{assistant_message_id_, seq_, writer_result_.sha256});
    }
    return End("cancelled");
  }
  if (!inference_status_.ok()) {
    // The partial reply is stored as interrupted; the client keeps what it has.
    const bool deadline = PastClientDeadline();
    const absl::string_view code =
        ErrorCodeName(deadline ? ErrorCode::kDeadlineExceeded : ErrorCode::kInferenceUnavailable);
    Emit(StreamInterrupted{
        assistant_message_id_, seq_, std::string(code.data(), code.size()),
        deadline ? absl::StrCat("the reply ran past its deadline of ", message_.deadline_ms, " ms")
                 : absl::StrCat("the model stopped: ", inference_status_.message()),
        std::move(text_), writer_result_.sha256});
    common::LogWarning("turn interrupted",
                       {{"message_id", assistant_message_id_}, {"trace_id", trace_.trace_id}});
    return End("interrupted");
  }
  HoldBranch();
  Emit(StreamComplete{assistant_message_id_, seq_, finish_reason_.empty() ? "stop" : finish_reason_,
                      prompt_tokens_, completion_tokens_, model_, writer_result_.sha256});
  End("complete");
}

void Turn::HoldBranch() {
  if (branch_.empty()) {
    return;
  }
  // The reply as persistence now stores it: every delta, ended complete.
  persistence_pb::Message& reply = branch_.emplace_back();
  reply.set_id(assistant_message_id_);
  reply.set_conversation_id(conversation_id_);
  reply.set_parent_id(user_message_id_);
  reply.set_role(persistence_pb::ROLE_ASSISTANT);
  reply.set_status(persistence_pb::MESSAGE_STATUS_COMPLETE);
  reply.set_content(text_);
  reply.set_last_seq(seq_);
  reply.set_model(model_);
  KeepNewest(branch_, deps_.history_messages);
  deps_.held_branch->conversation_id =
      message_.conversation_id.empty() ? conversation_id_ : message_.conversation_id;
  deps_.held_branch->messages = std::move(branch_);
  branch_.clear();
}

bool Turn::PastClientDeadline() const {
  return message_.deadline_ms > 0 &&
         inference_status_.code() == absl::StatusCode::kDeadlineExceeded;
}

void Turn::Fail(ErrorCode code, absl::string_view message) {
  slot_.Release();
  Emit(ErrorEvent{code, std::string(message), message_.id});
  const absl::string_view name = ErrorCodeName(code);
  common::LogWarning("turn failed", {{"code", std::string_view(name.data(), name.size())},
                                     {"message_id", assistant_message_id_},
                                     {"trace_id", trace_.trace_id}});
  End(generate_ != nullptr && seq_ > 0 ? "interrupted" : "error");
}

void Turn::End(absl::string_view outcome) {
  if (ended_) {
    return;
  }
  ended_ = true;
  if (!outcome.empty()) {
    deps_.metrics->Turn(outcome).Increment();
    deps_.metrics->turn_duration.Observe(Seconds(Clock::now() - received_));
    // One line per turn, so its trace id leads to the inference and persistence logs.
    common::LogInfo("turn ended", {{"outcome", std::string(outcome)},
                                   {"message_id", assistant_message_id_},
                                   {"trace_id", trace_.trace_id}});
  }
  // Release callbacks that hold this turn alive.
  if (heartbeat_ != nullptr) {
    heartbeat_->cancel();
  }
  generate_.reset();
  writer_.reset();
  slot_.Release();
  deps_.tracker->Remove(tracker_key_);
}

}  // namespace parley::edge
