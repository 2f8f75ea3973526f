#include "persistence/conversation_service.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/admission.h"

namespace parley::persistence {
namespace {

using WriteRequest = v1::WriteMessageStreamRequest;
using WriteResponse = v1::WriteMessageStreamResponse;

// A writer may run this far ahead of durability before reading pauses.
constexpr int64_t kMaxUnackedDeltas = 1024;

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status CheckId(const std::string& value, absl::string_view field) {
  if (value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  }
  if (value.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is longer than ", kMaxIdBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckOptionalId(const std::string& value, absl::string_view field) {
  return value.empty() ? absl::OkStatus() : CheckId(value, field);
}

// PostgreSQL text cannot hold NUL, so neither store accepts it.
absl::Status CheckText(const std::string& value, size_t limit, absl::string_view field) {
  if (value.size() > limit) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is longer than ", limit, " bytes"));
  }
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

absl::Status CheckMetadata(const google::protobuf::Map<std::string, std::string>& metadata) {
  size_t bytes = 0;
  for (const auto& [key, value] : metadata) {
    bytes += key.size() + value.size();
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("metadata contains a NUL byte");
    }
  }
  if (bytes > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata is larger than ", kMaxMetadataBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PageSize(int requested, int default_size, int max_size) {
  if (requested < 0) {
    return absl::InvalidArgumentError("page_size must not be negative");
  }
  if (requested == 0) {
    return default_size;
  }
  return std::min(requested, max_size);
}

// The code point starting at `text[*i]`, advancing `*i` past it; nullopt for
// anything that is not well-formed UTF-8 (overlong forms, surrogates and values
// past U+10FFFF included).
std::optional<char32_t> NextCodePoint(absl::string_view text, size_t* i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(*i);
  size_t length = 0;
  char32_t code_point = 0;
  char32_t smallest = 0;
  if (lead < 0x80) {
    ++*i;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code_point = lead & 0x1F;
    smallest = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code_point = lead & 0x0F;
    smallest = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code_point = lead & 0x07;
    smallest = 0x10000;
  } else {
    return std::nullopt;
  }
  if (text.size() - *i < length) {
    return std::nullopt;
  }
  for (size_t k = 1; k < length; ++k) {
    if ((byte(*i + k) & 0xC0) != 0x80) {
      return std::nullopt;
    }
    code_point = (code_point << 6) | (byte(*i + k) & 0x3F);
  }
  if (code_point < smallest || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return std::nullopt;
  }
  *i += length;
  return code_point;
}

// Checks an AppendMessage request (or a write stream's `start`) and fills in its defaults.
absl::Status CheckAppend(v1::AppendMessageRequest& append) {
  for (const absl::Status& status :
       {CheckId(append.user_id(), "user_id"),
        CheckOptionalId(append.conversation_id(), "conversation_id"),
        CheckOptionalId(append.parent_id(), "parent_id"),
        CheckOptionalId(append.client_message_id(), "client_message_id"),
        CheckOptionalId(append.model(), "model"), CheckOptionalId(append.origin(), "origin"),
        CheckText(append.content(), kMaxContentBytes, "content"),
        CheckText(append.conversation_title(), kMaxTitleBytes, "conversation_title")}) {
    if (!status.ok()) {
      return status;
    }
  }
  if (!append.client_conversation_id().empty()) {
    if (!append.conversation_id().empty()) {
      return absl::InvalidArgumentError("set conversation_id or client_conversation_id, not both");
    }
    if (absl::Status status =
            CheckClientConversationId(append.client_conversation_id(), "client_conversation_id");
        !status.ok()) {
      return status;
    }
  }
  if (append.role() == v1::ROLE_UNSPECIFIED || !v1::Role_IsValid(append.role())) {
    return absl::InvalidArgumentError("role is required");
  }
  if (append.status() == v1::MESSAGE_STATUS_UNSPECIFIED) {
    append.set_status(v1::MESSAGE_STATUS_COMPLETE);
  }
  if (!v1::MessageStatus_IsValid(append.status())) {
    return absl::InvalidArgumentError("unknown status");
  }
  if (append.status() == v1::MESSAGE_STATUS_STREAMING && append.role() != v1::ROLE_ASSISTANT) {
    return absl::InvalidArgumentError("only assistant messages can stream");
  }
  if (!append.has_turn()) {
    return absl::OkStatus();
  }
  if (append.role() != v1::ROLE_USER || append.status() != v1::MESSAGE_STATUS_COMPLETE) {
    return absl::InvalidArgumentError("turn needs a complete message of role user");
  }
  v1::TurnStart& turn = *append.mutable_turn();
  // The reply's client message id is the prefix and a message id of 32 hex digits.
  constexpr size_t kIdDigits = 32;
  for (const absl::Status& status :
       {CheckOptionalId(turn.reply_model(), "turn.reply_model"),
        CheckText(turn.reply_client_message_id_prefix(), kMaxIdBytes - kIdDigits,
                  "turn.reply_client_message_id_prefix"),
        CheckOptionalId(turn.known_branch_leaf_id(), "turn.known_branch_leaf_id")}) {
    if (!status.ok()) {
      return status;
    }
  }
  absl::StatusOr<int> history_size = PageSize(turn.history_page_size(), 100, 1000);
  if (!history_size.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("turn.history_", history_size.status().message()));
  }
  turn.set_history_page_size(*history_size);
  return absl::OkStatus();
}

void ToResponse(AppendResult result, v1::AppendMessageResponse& response) {
  *response.mutable_message() = std::move(result.message);
  response.set_created(result.created);
  for (v1::Message& message : result.history) {
    *response.add_history() = std::move(message);
  }
  if (result.reply.has_value()) {
    *response.mutable_reply() = *std::move(result.reply);
  }
  response.set_history_continues(result.history_continues);
}

// What a call is told when the pool refuses its store work (ThreadPool::TrySubmit).
absl::Status OverloadedError() {
  return absl::ResourceExhaustedError(
      "persistence is overloaded: too many store calls are waiting; retry later");
}

bool IsTerminal(v1::MessageStatus status) {
  return status == v1::MESSAGE_STATUS_COMPLETE || status == v1::MESSAGE_STATUS_CANCELLED ||
         status == v1::MESSAGE_STATUS_INTERRUPTED || status == v1::MESSAGE_STATUS_ERROR;
}

absl::Time TimeOf(const google::protobuf::Timestamp& time) {
  return absl::FromUnixSeconds(time.seconds()) + absl::Nanoseconds(time.nanos());
}

// A typing signal is worth nothing late; every other event is always delivered.
bool IsStale(const v1::ConversationEvent& event, absl::Duration max_age) {
  if (!event.has_signal() || event.signal().kind() != v1::SIGNAL_KIND_TYPING) {
    return false;
  }
  return absl::Now() - TimeOf(event.event_time()) > max_age;
}

// WriteMessageStream: `open`, then `delta`s handed to the group committer,
// then `finish`. Acknowledgements carry the highest durable seq; the first one
// (right after `open`) tells a resuming writer where the store stands. A turn's
// `start` instead of `open` is an AppendMessage on the pool, answered by the
// first acknowledgement (`started`), after which the stream is open on its reply.
//
// All state is under `mu_`; gRPC operations are started after releasing it
// (Step()), and Finish() waits until no store work or commit is outstanding,
// so nothing calls back into a deleted reactor.
class WriteStreamReactor final : public grpc::ServerBidiReactor<WriteRequest, WriteResponse>,
                                 public DeltaSink {
 public:
  explicit WriteStreamReactor(ConversationService::Deps deps) : deps_(deps) {
    deps_.metrics.streams_active().Increment();
    Step();
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) {
        read_closed_ = true;
        if (phase_ == Phase::kWaitOpen) {
          Fail(absl::InvalidArgumentError("stream closed before open"));
        }
      } else if (!final_status_.has_value()) {
        HandleFrame();
      }
    }
    Step();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        Fail(absl::CancelledError("client went away"));
      } else if (last_sent_) {
        Fail(absl::OkStatus());
      }
    }
    Step();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      Fail(absl::CancelledError("stream cancelled"));
    }
    Step();
  }

  void OnDone() override {
    bool holds_lease = false;
    {
      absl::MutexLock lock(&mu_);
      holds_lease = holds_lease_;
    }
    if (holds_lease) {
      deps_.leases.Release(message_id_);
    }
    deps_.metrics.streams_active().Decrement();
    delete this;
  }

  void OnCommitted(int deltas, absl::StatusOr<int64_t> durable_seq,
                   std::optional<absl::StatusOr<v1::Message>> finished) override {
    {
      absl::MutexLock lock(&mu_);
      if (deltas > 0) {
        in_flight_ -= deltas;
        if (!durable_seq.ok()) {
          Fail(durable_seq.status());
        } else {
          durable_seq_ = std::max(durable_seq_, *durable_seq);
        }
      }
      if (finished.has_value()) {
        --in_flight_;
        if (!finished->ok()) {
          Fail(finished->status());
        } else {
          store_finished_ = true;
          sha256_ = (*finished)->sha256();
          durable_seq_ = std::max(durable_seq_, (*finished)->last_seq());
        }
      }
    }
    Step();
  }

 private:
  enum class Phase { kWaitOpen, kOpening, kStreaming };

  // The first error (or OK) decides how the call ends.
  void Fail(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!final_status_.has_value()) {
      final_status_ = ToGrpcStatus(status);
    }
  }

  void HandleFrame() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (phase_ == Phase::kWaitOpen) {
      if (request_.has_start()) {
        start_ = std::move(*request_.mutable_start());
        if (absl::Status status = CheckAppend(start_); !status.ok()) {
          Fail(status);
          return;
        }
        if (!start_.has_turn()) {
          Fail(absl::InvalidArgumentError("start needs turn: the stream streams its reply"));
          return;
        }
        user_id_ = start_.user_id();
        phase_ = Phase::kOpening;
        start_requested_ = true;
        return;
      }
      if (!request_.has_open()) {
        Fail(absl::InvalidArgumentError("the first frame must be open or start"));
        return;
      }
      user_id_ = request_.open().user_id();
      message_id_ = request_.open().message_id();
      if (absl::Status status = CheckId(user_id_, "open.user_id"); !status.ok()) {
        Fail(status);
        return;
      }
      if (absl::Status status = CheckId(message_id_, "open.message_id"); !status.ok()) {
        Fail(status);
        return;
      }
      phase_ = Phase::kOpening;
      open_requested_ = true;
      return;
    }
    if (request_.has_delta()) {
      AcceptDeltas({request_.mutable_delta()});
      return;
    }
    if (request_.has_deltas()) {
      AcceptDeltas(Pointers(*request_.mutable_deltas()->mutable_deltas()));
      return;
    }
    if (request_.has_finish()) {
      AcceptFinish(request_.finish());
      return;
    }
    if (request_.has_last()) {
      AcceptDeltas(Pointers(*request_.mutable_last()->mutable_deltas()));
      if (!final_status_.has_value()) {
        AcceptFinish(request_.last().finish());
      }
      return;
    }
    Fail(absl::InvalidArgumentError(request_.has_open() || request_.has_start()
                                        ? "the stream is already open"
                                        : "empty frame"));
  }

  static std::vector<v1::StreamDelta*> Pointers(
      google::protobuf::RepeatedPtrField<v1::StreamDelta>& deltas) {
    std::vector<v1::StreamDelta*> pointers;
    pointers.reserve(deltas.size());
    for (v1::StreamDelta& delta : deltas) {
      pointers.push_back(&delta);
    }
    return pointers;
  }

  void AcceptFinish(const v1::StreamFinish& finish) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!IsTerminal(finish.status())) {
      Fail(absl::InvalidArgumentError(
          "finish.status must be complete, cancelled, interrupted or error"));
      return;
    }
    if (absl::Status status =
            CheckText(finish.finish_reason(), kMaxIdBytes, "finish.finish_reason");
        !status.ok()) {
      Fail(status);
      return;
    }
    finish_ = finish;
  }

  // Hands the deltas after `accepted_seq_` to the committer, in one submission; a seq already
  // accepted is a retry and skipped, a gap or an oversized text fails the stream.
  void AcceptDeltas(const std::vector<v1::StreamDelta*>& deltas)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_.has_value()) {
      Fail(absl::InvalidArgumentError("delta after finish"));
      return;
    }
    const int64_t first_seq = accepted_seq_ + 1;
    std::vector<std::string> texts;
    absl::Status status;
    for (v1::StreamDelta* delta : deltas) {
      if (delta->seq() <= accepted_seq_) {
        continue;  // Already stored or queued: a retry.
      }
      if (delta->seq() != accepted_seq_ + 1) {
        status = absl::FailedPreconditionError(
            absl::StrCat("delta seq ", delta->seq(), " leaves a gap after ", accepted_seq_));
        break;
      }
      status = CheckText(delta->text(), kMaxDeltaBytes, "delta.text");
      if (!status.ok()) {
        break;
      }
      streamed_bytes_ += delta->text().size();
      if (streamed_bytes_ > kMaxStreamedBytes) {
        status = absl::InvalidArgumentError(
            absl::StrCat("streamed message is larger than ", kMaxStreamedBytes, " bytes"));
        break;
      }
      accepted_seq_ = delta->seq();
      texts.push_back(std::move(*delta->mutable_text()));
    }
    // What was accepted before a bad delta is still committed, as separate frames would be.
    in_flight_ += static_cast<int>(texts.size());
    deps_.committer.Submit(this, message_id_, first_seq, std::move(texts));
    if (!status.ok()) {
      Fail(status);
    }
  }

  void Open() {
    absl::StatusOr<v1::Message> message = deps_.store.GetMessage(user_id_, message_id_);
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (!message.ok()) {
        Fail(message.status());
      } else if (message->status() != v1::MESSAGE_STATUS_STREAMING) {
        Fail(absl::FailedPreconditionError("message is not streaming"));
      } else {
        StreamOnLocked(message->last_seq(), message->content().size());
        ack_open_ = true;
      }
    }
    Step();
  }

  // The stream is open on `message_id_`, which holds `last_seq` deltas and `bytes` of text.
  void StreamOnLocked(int64_t last_seq, size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    phase_ = Phase::kStreaming;
    deps_.leases.Hold(message_id_);
    holds_lease_ = true;
    accepted_seq_ = durable_seq_ = last_seq;
    streamed_bytes_ = bytes;
  }

  // The turn's start: stores the user message and opens the reply, as AppendMessage does.
  void StartTurn() {
    const absl::Time began = absl::Now();
    absl::StatusOr<AppendResult> result = deps_.store.AppendMessage(start_);
    deps_.metrics.ObserveOperation("append_message", absl::Now() - began);
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (!result.ok()) {
        Fail(result.status());
      } else {
        if (result->reply.has_value()) {
          message_id_ = result->reply->id();
          StreamOnLocked(/*last_seq=*/0, /*bytes=*/0);
        }
        ToResponse(*std::move(result), started_);
        answer_start_ = true;
      }
    }
    Step();
  }

  // Every acknowledgement says which frames this persistence takes.
  void ClearResponse() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    response_.Clear();
    response_.set_takes_last(true);
  }

  // Decides under the lock what to start next, then starts it without the lock.
  void Step() {
    bool start_read = false;
    bool start_write = false;
    bool start_open = false;
    bool start_turn = false;
    bool end_with_write = false;
    std::optional<grpc::Status> finish_call;
    {
      absl::MutexLock lock(&mu_);
      if (!final_status_.has_value()) {
        if (open_requested_) {
          open_requested_ = false;
          ++in_flight_;
          start_open = true;
        }
        if (start_requested_) {
          start_requested_ = false;
          ++in_flight_;
          start_turn = true;
        }
        if (finish_.has_value() && !finish_started_) {
          // Committed after every delta accepted so far, in the same transaction as the last of
          // them when they still wait for one; it fails if any of them did not make it.
          finish_started_ = true;
          ++in_flight_;
          deps_.committer.SubmitFinish(this, message_id_, accepted_seq_, *finish_);
        }
        if (!writing_) {
          if (answer_start_) {
            ClearResponse();
            *response_.mutable_started() = std::move(started_);
            answer_start_ = false;
            // Without a reply there is nothing to stream: the answer is the last response.
            last_sent_ = phase_ != Phase::kStreaming;
            writing_ = start_write = true;
          } else if (store_finished_ && !last_sent_ && in_flight_ == 0) {
            ClearResponse();
            response_.set_durable_seq(durable_seq_);
            response_.set_finished(true);
            response_.set_sha256(sha256_);
            last_sent_ = writing_ = start_write = true;
          } else if (!store_finished_ && (durable_seq_ > acked_seq_ || ack_open_)) {
            ClearResponse();
            response_.set_durable_seq(durable_seq_);
            acked_seq_ = durable_seq_;
            ack_open_ = false;
            writing_ = start_write = true;
          }
        }
        const bool want_frames = phase_ == Phase::kWaitOpen || phase_ == Phase::kStreaming;
        if (want_frames && !reading_ && !read_closed_ && !finish_.has_value() &&
            accepted_seq_ - durable_seq_ < kMaxUnackedDeltas) {
          reading_ = start_read = true;
        }
        // A writer that half-closes without `finish` leaves the message
        // streaming (it may reopen it); end once everything it sent is acked.
        if (read_closed_ && !finish_.has_value() && phase_ == Phase::kStreaming &&
            in_flight_ == 0 && !writing_ && acked_seq_ == durable_seq_) {
          Fail(absl::OkStatus());
        }
      }
      // in_flight_ == 0: no store call, whose completion would find the reactor gone, is pending.
      if (start_write && last_sent_ && in_flight_ == 0) {
        Fail(absl::OkStatus());
        finish_called_ = end_with_write = true;
      }
      if (final_status_.has_value() && !finish_called_ && !writing_ && in_flight_ == 0) {
        finish_called_ = true;
        finish_call = final_status_;
      }
    }
    if (start_open) {
      deps_.pool.Submit([this] { Open(); });
    }
    // A start is new work, shed like an AppendMessage when too many store calls wait.
    const bool start_refused = start_turn && !deps_.pool.TrySubmit([this] { StartTurn(); });
    if (start_write && end_with_write) {
      // The last response and the status go out together; OnDone follows, no OnWriteDone.
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    } else if (start_write) {
      StartWrite(&response_);
    }
    if (start_read) {
      StartRead(&request_);
    }
    if (finish_call.has_value()) {
      Finish(*finish_call);
    }
    if (start_refused) {
      deps_.metrics.Overloaded("append_message");
      {
        absl::MutexLock lock(&mu_);
        --in_flight_;
        Fail(OverloadedError());
      }
      Step();
    }
  }

  ConversationService::Deps deps_;
  absl::Mutex mu_;
  WriteRequest request_;    // owned by the read in flight
  WriteResponse response_;  // owned by the write in flight
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kWaitOpen;
  std::string user_id_;
  std::string message_id_;
  // The `start` frame: set before its store call is queued, read by it.
  v1::AppendMessageRequest start_;
  bool start_requested_ ABSL_GUARDED_BY(mu_) = false;
  v1::AppendMessageResponse started_ ABSL_GUARDED_BY(mu_);  // its answer, until written
  bool answer_start_ ABSL_GUARDED_BY(mu_) = false;
  bool open_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool ack_open_ ABSL_GUARDED_BY(mu_) = false;
  int64_t accepted_seq_ ABSL_GUARDED_BY(mu_) = 0;  // last seq handed to the committer
  int64_t durable_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_seq_ ABSL_GUARDED_BY(mu_) = 0;
  size_t streamed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // deltas being committed + store calls
  std::optional<v1::StreamFinish> finish_ ABSL_GUARDED_BY(mu_);
  bool finish_started_ ABSL_GUARDED_BY(mu_) = false;
  bool store_finished_ ABSL_GUARDED_BY(mu_) = false;
  bool last_sent_ ABSL_GUARDED_BY(mu_) = false;  // the response in flight ends the stream
  std::string sha256_ ABSL_GUARDED_BY(mu_);      // of the stored text, once finished
  bool holds_lease_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// WatchMessage: reads the tail on the pool whenever the hub says the message
// changed, coalescing everything read while a write is in flight into the next
// WatchDelta (whose seq covers all of it), and ends with WatchFinish.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchMessageResponse>,
                           public MessageWatcher {
 public:
  WatchReactor(ConversationService::Deps deps, const v1::WatchMessageRequest& request)
      : deps_(deps),
        user_id_(request.user_id()),
        message_id_(request.message_id()),
        read_seq_(request.after_seq()) {
    deps_.metrics.watchers().Increment();
    // Subscribe before the first read so no commit falls between the two.
    deps_.hub.Subscribe(message_id_, this);
    Step();
  }

  void OnMessageChanged() override {
    bool step = false;
    {
      absl::MutexLock lock(&mu_);
      if (!final_status_.has_value() && !finish_.has_value()) {
        dirty_ = true;
        step = !reading_;
      }
    }
    if (step) {
      Step();
    }
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        Fail(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      } else if (finish_sent_) {
        Fail(grpc::Status::OK);
      }
    }
    Step();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      Fail(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
    }
    Step();
  }

  void OnDone() override {
    deps_.hub.Unsubscribe(message_id_, this);
    deps_.metrics.watchers().Decrement();
    delete this;
  }

 private:
  void Fail(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!final_status_.has_value()) {
      final_status_ = std::move(status);
    }
  }

  void Read(int64_t after_seq) {
    absl::StatusOr<MessageTail> tail = deps_.store.ReadTail(user_id_, message_id_, after_seq);
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!tail.ok()) {
        Fail(ToGrpcStatus(tail.status()));
      } else {
        std::string text = std::move(tail->text);
        if (after_seq == 0) {
          // Seq 0 reads the whole content; skip what an earlier read sent.
          text.erase(0, std::min(text.size(), zero_bytes_));
          zero_bytes_ += text.size();
        }
        pending_text_ += text;
        if (!text.empty() || tail->last_seq > read_seq_) {
          has_pending_ = true;
        }
        read_seq_ = std::max(read_seq_, tail->last_seq);
        if (tail->status != v1::MESSAGE_STATUS_STREAMING) {
          v1::WatchFinish finish;
          finish.set_status(tail->status);
          finish.set_finish_reason(tail->finish_reason);
          *finish.mutable_usage() = tail->usage;
          finish.set_last_seq(tail->last_seq);
          finish.set_sha256(tail->sha256);
          finish_ = finish;
        }
      }
    }
    Step();
  }

  void Step() {
    std::optional<int64_t> start_read;
    bool start_write = false;
    std::optional<grpc::Status> finish_call;
    {
      absl::MutexLock lock(&mu_);
      if (!final_status_.has_value()) {
        if (dirty_ && !reading_ && !finish_.has_value()) {
          dirty_ = false;
          reading_ = true;
          start_read = read_seq_;
        }
        if (!writing_) {
          if (has_pending_) {
            response_.mutable_delta()->set_seq(read_seq_);
            response_.mutable_delta()->set_text(std::move(pending_text_));
            pending_text_.clear();
            has_pending_ = false;
            writing_ = start_write = true;
          } else if (finish_.has_value() && !finish_sent_ && !reading_) {
            *response_.mutable_finish() = *finish_;
            finish_sent_ = writing_ = start_write = true;
          }
        }
      }
      if (final_status_.has_value() && !finish_called_ && !writing_ && !reading_) {
        finish_called_ = true;
        finish_call = final_status_;
      }
    }
    if (start_read.has_value()) {
      deps_.pool.Submit([this, after = *start_read] { Read(after); });
    }
    if (start_write) {
      StartWrite(&response_);
    }
    if (finish_call.has_value()) {
      Finish(*finish_call);
    }
  }

  ConversationService::Deps deps_;
  const std::string user_id_;
  const std::string message_id_;
  absl::Mutex mu_;
  v1::WatchMessageResponse response_;      // owned by the write in flight
  int64_t read_seq_ ABSL_GUARDED_BY(mu_);  // the tail is read up to here
  size_t zero_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string pending_text_ ABSL_GUARDED_BY(mu_);
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;  // the first read is due at once
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<v1::WatchFinish> finish_ ABSL_GUARDED_BY(mu_);
  bool finish_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// WatchConversation: checks ownership on the pool, subscribes, says `ready`,
// then writes the hub's events in order. A watcher that falls this far behind
// loses its backlog and gets a `gap` instead (it re-reads what it keeps).
constexpr size_t kMaxQueuedEvents = 1024;

class ConversationWatchReactor final
    : public grpc::ServerWriteReactor<v1::WatchConversationResponse>,
      public ConversationWatcher {
 public:
  ConversationWatchReactor(ConversationService::Deps deps,
                           const v1::WatchConversationRequest& request)
      : deps_(deps),
        user_id_(request.user_id()),
        conversation_id_(request.conversation_id()),
        client_name_(request.client_conversation_id()) {
    deps_.metrics.watchers().Increment();
    deps_.pool.Submit([this] { Check(); });
  }

  void OnConversationEvent(const v1::ConversationEvent& event) override {
    Enqueue([&](v1::WatchConversationResponse& response) { *response.mutable_event() = event; });
  }

  void OnConversationGap() override {
    Enqueue([](v1::WatchConversationResponse& response) { response.mutable_gap(); });
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        Fail(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      }
    }
    Step();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      Fail(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
    }
    Step();
  }

  void OnDone() override {
    bool subscribed = false;
    {
      absl::MutexLock lock(&mu_);
      subscribed = subscribed_;
    }
    if (subscribed) {
      deps_.hub.UnsubscribeConversation(this);
    }
    deps_.metrics.watchers().Decrement();
    delete this;
  }

 private:
  template <typename Fill>
  void Enqueue(Fill fill) {
    bool step = false;
    {
      absl::MutexLock lock(&mu_);
      if (final_status_.has_value()) {
        return;
      }
      if (queue_.size() >= kMaxQueuedEvents) {
        queue_.clear();
        queue_.emplace_back().mutable_gap();
      } else {
        fill(queue_.emplace_back());
      }
      step = !writing_;
    }
    if (step) {
      Step();
    }
  }

  void Fail(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!final_status_.has_value()) {
      final_status_ = std::move(status);
    }
  }

  void Check() {
    absl::StatusOr<v1::Conversation> conversation;
    if (client_name_.empty()) {
      conversation = deps_.store.GetConversation(user_id_, conversation_id_);
      if (conversation.ok()) {
        // Subscribed before `ready` is queued, so `ready` precedes every event.
        deps_.hub.SubscribeConversation(conversation_id_, this);
      }
    } else {
      // Waiting for the name before looking, so a conversation created meanwhile is not missed:
      // its creation moves this watcher to it.
      deps_.hub.SubscribeClientName(user_id_, client_name_, this);
      conversation = deps_.store.GetClientNamedConversation(user_id_, client_name_);
      if (conversation.ok()) {
        deps_.hub.SubscribeConversation(conversation->id(), this);
      } else if (conversation.status().code() == absl::StatusCode::kNotFound) {
        // Not stored yet: followed from the message that creates it.
        conversation = v1::Conversation();
      } else {
        deps_.hub.UnsubscribeConversation(this);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      checking_ = false;
      if (!conversation.ok()) {
        Fail(ToGrpcStatus(conversation.status()));
      } else {
        subscribed_ = true;
        queue_.emplace_front().mutable_ready()->set_conversation_id(conversation->id());
      }
    }
    Step();
  }

  void Step() {
    bool start_write = false;
    std::optional<grpc::Status> finish_call;
    {
      absl::MutexLock lock(&mu_);
      if (!final_status_.has_value() && !writing_ && !checking_) {
        // A typing signal that waited behind a slow reader is dropped, not sent late.
        while (!queue_.empty() && queue_.front().has_event() &&
               IsStale(queue_.front().event(), deps_.signal_max_age)) {
          queue_.pop_front();
          deps_.metrics.signals_dropped_at_delivery().Increment();
        }
        if (!queue_.empty()) {
          response_ = std::move(queue_.front());
          queue_.pop_front();
          writing_ = start_write = true;
        }
      }
      if (final_status_.has_value() && !finish_called_ && !writing_ && !checking_) {
        finish_called_ = true;
        finish_call = final_status_;
      }
    }
    if (start_write) {
      StartWrite(&response_);
    }
    if (finish_call.has_value()) {
      Finish(*finish_call);
    }
  }

  ConversationService::Deps deps_;
  const std::string user_id_;
  const std::string conversation_id_;  // Empty for a watch by client name.
  const std::string client_name_;
  absl::Mutex mu_;
  v1::WatchConversationResponse response_;  // owned by the write in flight
  std::deque<v1::WatchConversationResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool checking_ ABSL_GUARDED_BY(mu_) = true;
  bool subscribed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// Finishes a stream call that was refused before it began.
template <typename Base>
class RefusedReactor final : public Base {
 public:
  explicit RefusedReactor(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::Status CheckClientConversationId(absl::string_view name, absl::string_view field) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must not be empty"));
  }
  if (name.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is longer than ", kMaxIdBytes, " bytes"));
  }
  for (size_t i = 0; i < name.size();) {
    std::optional<char32_t> code_point = NextCodePoint(name, &i);
    if (!code_point.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(field, " is not valid UTF-8"));
    }
    // Unicode's control characters (general category Cc): C0, DEL and C1.
    if (*code_point < 0x20 || (*code_point >= 0x7F && *code_point <= 0x9F)) {
      return absl::InvalidArgumentError(absl::StrCat(field, " contains a control character"));
    }
  }
  return absl::OkStatus();
}

ConversationService::ConversationService(Store& store,
                                         std::shared_ptr<prometheus::Registry> registry,
                                         Options options)
    : store_(store),
      registry_(std::move(registry)),
      metrics_(*registry_, store.kind()),
      committer_(store, metrics_, options.commit),
      pool_(options.store_threads, options.store_queue_limit),
      leases_(store, options.stream_lease),
      deps_{store_, metrics_, pool_, committer_, hub_, leases_, options.signal_max_age} {
  store_.SetEventListener([this](const v1::ConversationEvent& event) {
    if (IsStale(event, deps_.signal_max_age)) {
      metrics_.signals_dropped_at_delivery().Increment();
      return;
    }
    hub_.Publish(event);
  });
  store_.SetCommitListener([this](size_t transactions) {
    metrics_.transactions_per_commit().Observe(static_cast<double>(transactions));
  });
  store_.SetChangeListener([this](const std::string& message_id) {
    hub_.Notify(message_id);
    if (message_id.empty()) {
      hub_.PublishGap();
    }
  });
}

ConversationService::~ConversationService() {
  store_.SetCommitListener(nullptr);
  store_.SetChangeListener(nullptr);
  store_.SetEventListener(nullptr);
}

template <typename Work>
grpc::ServerUnaryReactor* ConversationService::RunOnPool(grpc::CallbackServerContext* context,
                                                         const char* operation, Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto task = [this, reactor, operation, work = std::move(work)]() mutable {
    const absl::Time start = absl::Now();
    const absl::Status status = work();
    metrics_.ObserveOperation(operation, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(status));
  };
  const auto admission = context->client_metadata().find(common::kAdmissionMetadataKey);
  const bool continuing = admission != context->client_metadata().end() &&
                          admission->second == common::kAdmissionContinuing;
  if (continuing) {
    // Work already accepted (a turn past its acknowledgement) is finished, not shed.
    pool_.Submit(std::move(task));
    return reactor;
  }
  const bool queued = pool_.TrySubmit(std::move(task));
  if (!queued) {
    metrics_.Overloaded(operation);
    reactor->Finish(ToGrpcStatus(OverloadedError()));
  }
  return reactor;
}

namespace {

// A watch or a signal names its conversation by id, or by the client's name before it is stored.
absl::Status CheckConversationOrName(const std::string& conversation_id,
                                     const std::string& client_conversation_id) {
  if (client_conversation_id.empty()) {
    return CheckId(conversation_id, "conversation_id");
  }
  if (!conversation_id.empty()) {
    return absl::InvalidArgumentError("set conversation_id or client_conversation_id, not both");
  }
  return CheckClientConversationId(client_conversation_id, "client_conversation_id");
}

grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ConversationService::CreateConversation(
    grpc::CallbackServerContext* context, const v1::CreateConversationRequest* request,
    v1::CreateConversationResponse* response) {
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"),
        CheckText(request->title(), kMaxTitleBytes, "title"), CheckMetadata(request->metadata())}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  return RunOnPool(context, "create_conversation", [this, request, response] {
    absl::StatusOr<v1::Conversation> conversation = store_.CreateConversation(*request);
    if (conversation.ok()) {
      *response->mutable_conversation() = *std::move(conversation);
    }
    return conversation.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::GetConversation(
    grpc::CallbackServerContext* context, const v1::GetConversationRequest* request,
    v1::GetConversationResponse* response) {
  const bool by_name = !request->client_conversation_id().empty();
  if (by_name == !request->conversation_id().empty()) {
    return Refuse(context, absl::InvalidArgumentError(
                               "exactly one of conversation_id and client_conversation_id is "
                               "required"));
  }
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"),
        by_name
            ? CheckClientConversationId(request->client_conversation_id(), "client_conversation_id")
            : CheckId(request->conversation_id(), "conversation_id")}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  return RunOnPool(context, "get_conversation", [this, request, response, by_name] {
    absl::StatusOr<v1::Conversation> conversation =
        by_name ? store_.GetClientNamedConversation(request->user_id(),
                                                    request->client_conversation_id())
                : store_.GetConversation(request->user_id(), request->conversation_id());
    if (conversation.ok()) {
      *response->mutable_conversation() = *std::move(conversation);
    }
    return conversation.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::ListConversations(
    grpc::CallbackServerContext* context, const v1::ListConversationsRequest* request,
    v1::ListConversationsResponse* response) {
  if (absl::Status status = CheckId(request->user_id(), "user_id"); !status.ok()) {
    return Refuse(context, status);
  }
  absl::StatusOr<int> page_size = PageSize(request->page_size(), 20, 100);
  if (!page_size.ok()) {
    return Refuse(context, page_size.status());
  }
  return RunOnPool(context, "list_conversations", [this, request, response, size = *page_size] {
    absl::StatusOr<ConversationPage> page =
        store_.ListConversations(request->user_id(), size, request->page_token());
    if (page.ok()) {
      for (v1::Conversation& conversation : page->conversations) {
        *response->add_conversations() = std::move(conversation);
      }
      response->set_next_page_token(page->next_page_token);
    }
    return page.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::UpdateConversation(
    grpc::CallbackServerContext* context, const v1::UpdateConversationRequest* request,
    v1::UpdateConversationResponse* response) {
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"),
        CheckId(request->conversation().id(), "conversation.id"),
        CheckText(request->conversation().title(), kMaxTitleBytes, "title"),
        CheckMetadata(request->conversation().metadata())}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  auto update = std::make_shared<v1::UpdateConversationRequest>(*request);
  if (update->update_mask().paths().empty()) {
    // An empty mask replaces every updatable field.
    update->mutable_update_mask()->add_paths("title");
    update->mutable_update_mask()->add_paths("metadata");
  }
  for (const std::string& path : update->update_mask().paths()) {
    if (path != "title" && path != "metadata") {
      return Refuse(context,
                    absl::InvalidArgumentError(absl::StrCat(
                        "update_mask path \"", path, "\" is not one of \"title\", \"metadata\"")));
    }
  }
  return RunOnPool(context, "update_conversation", [this, update, response] {
    absl::StatusOr<v1::Conversation> conversation = store_.UpdateConversation(*update);
    if (conversation.ok()) {
      *response->mutable_conversation() = *std::move(conversation);
    }
    return conversation.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::DeleteConversation(
    grpc::CallbackServerContext* context, const v1::DeleteConversationRequest* request,
    v1::DeleteConversationResponse* /*response*/) {
  for (const absl::Status& status : {CheckId(request->user_id(), "user_id"),
                                     CheckId(request->conversation_id(), "conversation_id")}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  return RunOnPool(context, "delete_conversation", [this, request] {
    return store_.DeleteConversation(request->user_id(), request->conversation_id());
  });
}

grpc::ServerUnaryReactor* ConversationService::ForkConversation(
    grpc::CallbackServerContext* context, const v1::ForkConversationRequest* request,
    v1::ForkConversationResponse* response) {
  for (const absl::Status& status : {CheckId(request->user_id(), "user_id"),
                                     CheckId(request->conversation_id(), "conversation_id"),
                                     CheckId(request->message_id(), "message_id"),
                                     CheckText(request->title(), kMaxTitleBytes, "title")}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  return RunOnPool(context, "fork_conversation", [this, request, response] {
    absl::StatusOr<v1::Conversation> conversation = store_.ForkConversation(*request);
    if (conversation.ok()) {
      *response->mutable_conversation() = *std::move(conversation);
    }
    return conversation.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::AppendMessage(
    grpc::CallbackServerContext* context, const v1::AppendMessageRequest* request,
    v1::AppendMessageResponse* response) {
  auto append = std::make_shared<v1::AppendMessageRequest>(*request);
  if (absl::Status status = CheckAppend(*append); !status.ok()) {
    return Refuse(context, status);
  }
  return RunOnPool(context, "append_message", [this, append, response] {
    absl::StatusOr<AppendResult> result = store_.AppendMessage(*append);
    if (result.ok()) {
      ToResponse(*std::move(result), *response);
    }
    return result.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::GetMessage(grpc::CallbackServerContext* context,
                                                          const v1::GetMessageRequest* request,
                                                          v1::GetMessageResponse* response) {
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"), CheckId(request->message_id(), "message_id")}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  return RunOnPool(context, "get_message", [this, request, response] {
    absl::StatusOr<v1::Message> message =
        store_.GetMessage(request->user_id(), request->message_id());
    if (message.ok()) {
      *response->mutable_message() = *std::move(message);
    }
    return message.status();
  });
}

grpc::ServerUnaryReactor* ConversationService::ListMessages(grpc::CallbackServerContext* context,
                                                            const v1::ListMessagesRequest* request,
                                                            v1::ListMessagesResponse* response) {
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"),
        CheckId(request->conversation_id(), "conversation_id"),
        CheckOptionalId(request->leaf_message_id(), "leaf_message_id")}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  absl::StatusOr<int> page_size = PageSize(request->page_size(), 100, 1000);
  if (!page_size.ok()) {
    return Refuse(context, page_size.status());
  }
  auto list = std::make_shared<v1::ListMessagesRequest>(*request);
  list->set_page_size(*page_size);
  return RunOnPool(context, "list_messages", [this, list, response] {
    absl::StatusOr<MessagePage> page = store_.ListMessages(*list);
    if (page.ok()) {
      for (v1::Message& message : page->messages) {
        *response->add_messages() = std::move(message);
      }
      response->set_next_page_token(page->next_page_token);
    }
    return page.status();
  });
}

grpc::ServerBidiReactor<v1::WriteMessageStreamRequest, v1::WriteMessageStreamResponse>*
ConversationService::WriteMessageStream(grpc::CallbackServerContext* /*context*/) {
  return new WriteStreamReactor(deps_);
}

grpc::ServerWriteReactor<v1::WatchMessageResponse>* ConversationService::WatchMessage(
    grpc::CallbackServerContext* /*context*/, const v1::WatchMessageRequest* request) {
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"), CheckId(request->message_id(), "message_id"),
        request->after_seq() < 0 ? absl::InvalidArgumentError("after_seq must not be negative")
                                 : absl::OkStatus()}) {
    if (!status.ok()) {
      return new RefusedReactor<grpc::ServerWriteReactor<v1::WatchMessageResponse>>(status);
    }
  }
  return new WatchReactor(deps_, *request);
}

grpc::ServerWriteReactor<v1::WatchConversationResponse>* ConversationService::WatchConversation(
    grpc::CallbackServerContext* /*context*/, const v1::WatchConversationRequest* request) {
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"),
        CheckConversationOrName(request->conversation_id(), request->client_conversation_id())}) {
    if (!status.ok()) {
      return new RefusedReactor<grpc::ServerWriteReactor<v1::WatchConversationResponse>>(status);
    }
  }
  return new ConversationWatchReactor(deps_, *request);
}

grpc::ServerUnaryReactor* ConversationService::PublishSignal(
    grpc::CallbackServerContext* context, const v1::PublishSignalRequest* request,
    v1::PublishSignalResponse* /*response*/) {
  const v1::Signal& signal = request->signal();
  for (const absl::Status& status :
       {CheckId(request->user_id(), "user_id"),
        CheckConversationOrName(request->conversation_id(), request->client_conversation_id()),
        signal.kind() == v1::SIGNAL_KIND_TYPING || signal.kind() == v1::SIGNAL_KIND_JOIN ||
                signal.kind() == v1::SIGNAL_KIND_LEAVE
            ? absl::OkStatus()
            : absl::InvalidArgumentError("signal.kind must be typing, join or leave"),
        CheckOptionalId(signal.origin(), "signal.origin"),
        CheckText(signal.payload(), kMaxSignalPayloadBytes, "signal.payload")}) {
    if (!status.ok()) {
      return Refuse(context, status);
    }
  }
  return RunOnPool(context, "publish_signal", [this, request] {
    v1::ConversationEvent event;
    event.set_conversation_id(request->conversation_id());
    if (!request->client_conversation_id().empty()) {
      absl::StatusOr<v1::Conversation> conversation =
          store_.GetClientNamedConversation(request->user_id(), request->client_conversation_id());
      if (conversation.ok()) {
        event.set_conversation_id(conversation->id());
      } else if (conversation.status().code() == absl::StatusCode::kNotFound) {
        // Not stored yet: for the watches of the name.
        event.set_user_id(request->user_id());
        event.set_client_conversation_id(request->client_conversation_id());
      } else {
        return conversation.status();
      }
    }
    *event.mutable_signal() = request->signal();
    const absl::Time now = absl::Now();
    if (request->has_sent_time() && TimeOf(request->sent_time()) < now) {
      // Its age counts from when it was made: a signal that waited on the way (a stopped
      // replica, a full queue) is as old here as it really is. The store keeps an earlier time.
      *event.mutable_event_time() = request->sent_time();
    }
    if (request->signal().kind() == v1::SIGNAL_KIND_TYPING &&
        ((request->has_expire_time() && now > TimeOf(request->expire_time())) ||
         (event.has_event_time() && IsStale(event, deps_.signal_max_age)))) {
      metrics_.signals_dropped_at_publish().Increment();
      return absl::DeadlineExceededError("the typing signal is too old to deliver; it was dropped");
    }
    return store_.PublishSignal(request->user_id(), event);
  });
}

}  // namespace parley::persistence
