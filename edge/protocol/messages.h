#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"

// The edge's internal vocabulary: what a client asks for (commands) and what it
// is told (events). Codecs translate between these and one client dialect's
// frames; the turn logic only ever sees these types.
namespace parley::edge {

// ---- Commands (client → edge) ----

// What a turn does with a model name the inference service does not know.
enum class UnknownModel {
  kRefuse,      // The reply fails with not_found (the native protocol).
  kUseDefault,  // The default model answers (dialects whose clients hard-code model names).
};

// How the model samples a reply; unset fields keep the engine's defaults.
struct Sampling {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int32_t> max_tokens;
  std::vector<std::string> stop;
};

// Sends a user message and starts a turn.
struct SendMessage {
  std::string id;               // Client-chosen idempotency key.
  std::string conversation_id;  // Empty starts a new conversation.
  std::string content;
  std::string model;  // Empty selects the inference service's default.
  // The message this one follows (a client continuing an older branch); empty follows the
  // conversation's newest message.
  std::string parent_id;
  // Set for an edit: the user message this one replaces. The new message becomes its sibling
  // (same parent) and gets a reply of its own; the old branch stays stored.
  std::string replaces_message_id;
  // Set for a regenerate: a user message, or a reply to one, whose reply is generated again as
  // a sibling of the earlier replies. `content` is unused.
  std::string regenerates_message_id;
  // The client's deadline for the reply, in milliseconds from when the message arrived; 0 for
  // none. Capped by --max_deadline_ms.
  int64_t deadline_ms = 0;
  Sampling sampling;
  // Set by a dialect, never by a client frame: metadata of the conversation this message creates
  // (ignored for an existing one), and an instruction for the model that comes before the
  // conversation in its context (not stored).
  std::map<std::string, std::string> conversation_metadata;
  std::string system_context;
  // Set by the connection from its dialect's ChatOptions, never by a client.
  UnknownModel unknown_model = UnknownModel::kRefuse;
};

// Asks for another reply to a stored message (decoded into a SendMessage for the turn).
struct RegenerateReply {
  std::string id;          // Client-chosen idempotency key, like a message's.
  std::string message_id;  // The reply to replace, or the user message it answered.
  std::string model;
};

// Replaces a stored user message with new text and answers it (decoded into a SendMessage).
struct EditMessage {
  std::string id;
  std::string message_id;
  std::string content;
  std::string model;
};

struct Ping {};

// Asks for the stored messages of a conversation (page reload): the newest ones, as a
// `history` event. The original form of ListMessages, kept for clients that use it.
struct GetHistory {
  std::string conversation_id;
};

// Asks for the user's conversations, newest first, a page at a time.
struct ListConversations {
  std::string page_token;
  int32_t page_size = 0;  // 0 picks the default.
};

// Asks for a conversation's messages, oldest first, a page at a time; or, with
// `leaf_message_id`, the branch from the first message to that one.
struct ListMessages {
  std::string conversation_id;
  std::string page_token;
  int32_t page_size = 0;
  std::string leaf_message_id;
};

// Starts or stops viewing a conversation: `typing` from the user's other connections that view
// it is relayed to this one.
struct JoinConversation {
  std::string conversation_id;
};
struct LeaveConversation {
  std::string conversation_id;
};

// The user is (or stopped) typing in a conversation this connection joined. Never stored.
struct Typing {
  std::string conversation_id;
  bool is_typing = true;
};

// Stops the reply `message_id` that this connection started; what was streamed stays stored.
struct CancelTurn {
  std::string message_id;
};

// Asks for the rest of reply `message_id` after `last_seq`, e.g. after a reconnect.
struct ResumeStream {
  std::string message_id;
  int64_t last_seq = 0;
};

// A fresh token for the connection's user, so the connection outlives the token it opened
// with (which would otherwise close it when it expires).
struct RenewToken {
  std::string token;
};

using Command = std::variant<SendMessage, Ping, GetHistory, CancelTurn, ResumeStream,
                             RegenerateReply, EditMessage, ListConversations, ListMessages,
                             JoinConversation, LeaveConversation, Typing, RenewToken>;

// ---- Events (edge → client) ----

struct Ack {
  std::string id;
  std::string conversation_id;
  std::string message_id;
  // When the user message was stored (RFC 3339, UTC), for dialects that show it; empty when the
  // message was stored earlier (a retry, a regenerate).
  std::string created_at;
};

struct StreamStart {
  std::string conversation_id;
  std::string message_id;
  std::string model;
  // When the reply's message was stored (RFC 3339, UTC), for dialects that show it; empty when
  // unknown.
  std::string created_at;
};

struct StreamToken {
  std::string message_id;
  int64_t seq = 0;
  std::string token;
};

// The model's reasoning before (or between) parts of its answer, when the engine streams it.
// Shown live only: not part of the stored reply, not numbered, not replayed by a resume.
struct StreamReasoning {
  std::string message_id;
  std::string text;
};

struct StreamComplete {
  std::string message_id;
  int64_t last_seq = 0;
  std::string finish_reason;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  // The model that answered, for dialects that name it (the native frame does not carry it).
  // Empty when the reply was followed from storage (a resume); its stream_start names it.
  std::string model;
  // Lowercase hex SHA-256 of the stored reply text (computed by persistence when it ended).
  std::string sha256;
};

// The reply was stopped on request; the stored text is exactly seq 1..last_seq.
struct StreamCancelled {
  std::string message_id;
  int64_t last_seq = 0;
  std::string sha256;  // Of the stored text, as on StreamComplete.
};

// Inference failed mid-reply; the partial text is stored with status interrupted.
struct StreamInterrupted {
  std::string message_id;
  int64_t last_seq = 0;
  std::string error;    // An ErrorCodeName, e.g. "inference_unavailable".
  std::string message;  // Human-readable detail.
  std::string partial_response;
  std::string sha256;  // Of the whole stored text (not only of this stream's part).
};

// First answer to ResumeStream. `recovered` false: unknown message (or not this user's); the
// client should reload the conversation instead.
struct Resumed {
  std::string message_id;
  bool recovered = false;
};

// Sent while a reply waits for its first token, so idle-timing proxies see traffic.
struct Heartbeat {
  std::string message_id;
};

// Stable, documented codes; clients switch on them, so never rename one.
enum class ErrorCode {
  kInvalidJson,
  kInvalidFrame,
  kUnknownType,
  kNotFound,
  kInferenceUnavailable,
  kStorageUnavailable,
  kShuttingDown,
  kInternal,
  kRateLimited,       // Too many messages; `retry_after_ms` says when one would be accepted.
  kTooManyTurns,      // The user already has the maximum number of replies generating.
  kDeadlineExceeded,  // The reply ran past the deadline its message gave it.
  kUnauthenticated,   // A token the connection was given (RenewToken) was refused.
  kTokenExpired,      // The connection's token expired; the connection closes.
};

absl::string_view ErrorCodeName(ErrorCode code);

struct ErrorEvent {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string id;              // The client id of the frame that failed, when known.
  int64_t retry_after_ms = 0;  // For kRateLimited: sent as `retryAfterMs`.
  // The conversation a refused join or typing named, for dialects that say which (the native
  // frame does not carry it).
  std::string conversation_id;
};

struct Pong {};

// Answer to RenewToken: the connection now lasts until `expires_at` (RFC 3339, UTC).
struct TokenRenewed {
  std::string expires_at;
};

struct HistoryMessage {
  std::string id;
  std::string role;  // "user", "assistant" or "system".
  std::string content;
  std::string status;  // "streaming", "complete", "cancelled", "interrupted" or "error".
  // Empty for the first message. Messages with the same parent are edits or regenerations.
  std::string parent_id;
  std::string model;
  std::string finish_reason;
  int64_t last_seq = 0;
  std::string created_at;  // RFC 3339, UTC.
  // Of `content`, once the message ended; empty while it streams.
  std::string sha256;
};

// Answer to GetHistory.
struct History {
  std::string conversation_id;
  std::vector<HistoryMessage> messages;
};

// Answer to ListMessages.
struct MessagePage {
  std::string conversation_id;
  std::vector<HistoryMessage> messages;
  std::string next_page_token;  // Empty on the last page.
};

struct ConversationSummary {
  std::string id;
  std::string title;
  std::string created_at;  // RFC 3339, UTC.
  std::string updated_at;
  // The name a client gave the conversation (its first message's conversationId); empty for one
  // Parley named.
  std::string client_conversation_id;
};

// Answer to ListConversations.
struct ConversationPage {
  std::vector<ConversationSummary> conversations;
  std::string next_page_token;
};

// Answers to JoinConversation / LeaveConversation.
struct Joined {
  std::string conversation_id;
};
struct Left {
  std::string conversation_id;
};

// A message another of the user's connections added to a conversation this one views. Its reply
// follows as stream_start, stream_token, ... exactly as the sender sees them.
struct MessageAdded {
  std::string conversation_id;
  HistoryMessage message;
};

// Another of the user's connections started (stopped) viewing a conversation this one views, for
// dialects that show who is in a room (Socket.IO's chat:user-joined); the native protocol shows
// nothing.
struct MemberJoined {
  std::string conversation_id;
  std::string user_id;
  std::string display_name;
};
struct MemberLeft {
  std::string conversation_id;
  std::string user_id;
  std::string display_name;
};

// Relayed from another of the user's connections viewing the conversation.
struct TypingRelay {
  std::string conversation_id;
  bool is_typing = true;
};

using Event = std::variant<Ack, StreamStart, StreamToken, StreamComplete, ErrorEvent, Pong, History,
                           StreamCancelled, StreamInterrupted, Resumed, Heartbeat, MessagePage,
                           ConversationPage, Joined, Left, TypingRelay, MessageAdded,
                           StreamReasoning, MemberJoined, MemberLeft, TokenRenewed>;

// Short names used as metric labels ("ack", "stream_token", ...).
absl::string_view CommandName(const Command& command);
absl::string_view EventName(const Event& event);

}  // namespace parley::edge
