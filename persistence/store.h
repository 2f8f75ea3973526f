#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parley/persistence/v1/conversation_service.pb.h"

namespace parley::persistence {

namespace v1 = ::parley::persistence::v1;

// The finish reason of a streaming reply whose writer's lease lapsed.
inline constexpr absl::string_view kLeaseExpiredReason = "lease_expired";

struct ConversationPage {
  std::vector<v1::Conversation> conversations;
  std::string next_page_token;  // empty on the last page
};

struct MessagePage {
  std::vector<v1::Message> messages;
  std::string next_page_token;
};

struct AppendResult {
  v1::Message message;
  bool created = false;  // false: the client message id matched a stored message
  // With the request's `turn`, when `created`: the branch history ending with `message` and the
  // streaming reply opened to it (see v1::TurnStart).
  std::vector<v1::Message> history;
  // `history` is the new message alone, to follow the branch the caller holds
  // (v1::TurnStart::known_branch_leaf_id).
  bool history_continues = false;
  std::optional<v1::Message> reply;
};

// Consecutive deltas of one streaming message: `texts[i]` is seq `first_seq + i`.
struct DeltaRun {
  std::string message_id;
  int64_t first_seq = 0;
  std::vector<std::string> texts;
};

// The end of a streaming message, committed with a batch of deltas (Store::CommitBatch).
struct FinishRun {
  std::string message_id;
  // The message's highest durable seq once the batch's deltas are in: otherwise (a delta this
  // finish follows is missing) the finish fails with FAILED_PRECONDITION.
  int64_t last_seq = 0;
  v1::StreamFinish finish;
};

// Per run and per finish of one CommitBatch, in their order.
struct BatchResult {
  std::vector<absl::StatusOr<int64_t>> runs;          // as AppendDeltas
  std::vector<absl::StatusOr<v1::Message>> finishes;  // as FinishMessage
};

// What a reader of a (possibly still streaming) message has not seen yet.
struct MessageTail {
  std::string text;      // every delta after the requested seq, concatenated
  int64_t last_seq = 0;  // the highest durable seq, which `text` ends at
  v1::MessageStatus status = v1::MESSAGE_STATUS_UNSPECIFIED;
  std::string finish_reason;
  v1::Usage usage;
  std::string sha256;  // of the whole text, once the message ended
};

// Durable home of conversations and messages. Every call that names user data
// takes the acting user's id and answers NOT_FOUND for anything that user does
// not own (or that is soft-deleted), so ids never leak. Implementations are
// thread-safe and block; the service calls them from its own thread pool.
//
// Inputs arrive validated by the service (sizes, required fields, page sizes
// already clamped); a store checks only what needs its data.
class Store {
 public:
  // Called after a commit that changed a message's deltas or status, with the
  // message id; an empty id means "anything may have changed" (e.g. after a
  // lost notification channel). May run on any thread; must not block.
  using ChangeListener = std::function<void(const std::string& message_id)>;

  // Told of each conversation event after its commit: from this process only
  // (SQLite), or from every process on the database, this one included
  // (PostgreSQL). May run on any thread; must not block.
  using EventListener = std::function<void(const v1::ConversationEvent& event)>;

  virtual ~Store() = default;

  // "sqlite" or "postgresql", for metrics and logs.
  virtual absl::string_view kind() const = 0;

  virtual absl::StatusOr<v1::Conversation> CreateConversation(
      const v1::CreateConversationRequest& request) = 0;
  virtual absl::StatusOr<v1::Conversation> GetConversation(const std::string& user_id,
                                                           const std::string& conversation_id) = 0;
  // The user's live conversation of that client name (see AppendMessage).
  virtual absl::StatusOr<v1::Conversation> GetClientNamedConversation(
      const std::string& user_id, const std::string& client_conversation_id) = 0;
  // Newest update first. `page_size` is 1..100.
  virtual absl::StatusOr<ConversationPage> ListConversations(const std::string& user_id,
                                                             int page_size,
                                                             const std::string& page_token) = 0;
  // `update_mask` paths are "title" and/or "metadata" (validated by the caller).
  virtual absl::StatusOr<v1::Conversation> UpdateConversation(
      const v1::UpdateConversationRequest& request) = 0;
  virtual absl::Status DeleteConversation(const std::string& user_id,
                                          const std::string& conversation_id) = 0;
  // Copies root → `message_id` into a new conversation. Copied messages get new
  // ids; a copy of a message still streaming is marked interrupted.
  virtual absl::StatusOr<v1::Conversation> ForkConversation(
      const v1::ForkConversationRequest& request) = 0;

  // Idempotent on `client_message_id`. `status` is already defaulted. With
  // `client_conversation_id` (and no `conversation_id`): the user's live
  // conversation of that name, created if there is none; concurrent first uses,
  // also from other processes on the same database, end in one conversation.
  // With `turn` (validated, its `history_page_size` already 1..1000), a message it creates
  // comes with its branch history and a streaming reply, in the same transaction.
  virtual absl::StatusOr<AppendResult> AppendMessage(const v1::AppendMessageRequest& request) = 0;
  virtual absl::StatusOr<v1::Message> GetMessage(const std::string& user_id,
                                                 const std::string& message_id) = 0;
  // `page_size` is 1..1000.
  virtual absl::StatusOr<MessagePage> ListMessages(const v1::ListMessagesRequest& request) = 0;

  // Commits every run in one transaction (group commit) and returns, per run,
  // the message's highest durable seq afterwards. Seqs already stored are
  // skipped; a run that would leave a gap fails with FAILED_PRECONDITION, as
  // does one for a message that is not streaming. Ownership was checked when
  // the stream opened.
  virtual std::vector<absl::StatusOr<int64_t>> AppendDeltas(const std::vector<DeltaRun>& runs) = 0;
  // AppendDeltas(runs), then FinishMessage of each of `finishes` (each after its message's run,
  // if any), in one transaction: one commit ends the replies whose last deltas it makes durable.
  // A finish that fails on its own (its message not streaming, or not at its `last_seq`) fails
  // alone, before writing anything.
  virtual BatchResult CommitBatch(const std::vector<DeltaRun>& runs,
                                  const std::vector<FinishRun>& finishes) = 0;
  // Ends a streaming message; FAILED_PRECONDITION if it is not streaming.
  virtual absl::StatusOr<v1::Message> FinishMessage(const std::string& message_id,
                                                    const v1::StreamFinish& finish) = 0;
  // The durable text after `after_seq` (after_seq 0: the whole content).
  virtual absl::StatusOr<MessageTail> ReadTail(const std::string& user_id,
                                               const std::string& message_id,
                                               int64_t after_seq) = 0;

  // Tells the conversation's watchers of `event` (a signal, never stored), stamped with the time
  // now unless it carries an earlier `event_time` (when its sender made it).
  // NOT_FOUND unless `user_id` owns the live conversation `event.conversation_id`; an event with
  // no conversation id (a signal to a client's name not stored yet) needs no check.
  virtual absl::Status PublishSignal(const std::string& user_id,
                                     const v1::ConversationEvent& event) = 0;

  // Streaming replies are leased to their writer: a reply whose lease lapsed is
  // abandoned. AppendMessage gives a new streaming reply `lease` (set before serving).
  virtual void SetStreamLease(absl::Duration lease) = 0;
  // Extends the leases of these streaming messages to `expire_time`.
  virtual absl::Status RenewLeases(const std::vector<std::string>& message_ids,
                                   absl::Time expire_time) = 0;
  // Ends every streaming message whose lease lapsed before `now` as
  // interrupted ("lease_expired") with the text it holds; returns how many.
  virtual absl::StatusOr<int> ExpireLeases(absl::Time now) = 0;

  // Told how many write transactions each commit carried, where the store commits them in
  // groups (SQLite); never called otherwise. Runs on the committing thread; must not block.
  using CommitListener = std::function<void(size_t transactions)>;

  // Set once, before serving.
  virtual void SetCommitListener(CommitListener /*listener*/) {}
  virtual void SetChangeListener(ChangeListener listener) = 0;
  virtual void SetEventListener(EventListener listener) = 0;
};

}  // namespace parley::persistence
