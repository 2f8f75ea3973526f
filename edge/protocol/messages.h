#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"

// The edge's internal vocabulary: what a client asks for (commands) and what it
// is told (events). Codecs translate between these and one client dialect's
// frames; the turn logic only ever sees these types.
namespace parley::edge {

// ---- Commands (client → edge) ----

// Sends a user message and starts a turn.
struct SendMessage {
  std::string id;               // Client-chosen idempotency key.
  std::string conversation_id;  // Empty starts a new conversation.
  std::string content;
  std::string model;  // Empty selects the inference service's default.
};

struct Ping {};

// Asks for the stored messages of a conversation (page reload).
struct GetHistory {
  std::string conversation_id;
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

using Command = std::variant<SendMessage, Ping, GetHistory, CancelTurn, ResumeStream>;

// ---- Events (edge → client) ----

struct Ack {
  std::string id;
  std::string conversation_id;
  std::string message_id;
};

struct StreamStart {
  std::string conversation_id;
  std::string message_id;
  std::string model;
};

struct StreamToken {
  std::string message_id;
  int64_t seq = 0;
  std::string token;
};

struct StreamComplete {
  std::string message_id;
  int64_t last_seq = 0;
  std::string finish_reason;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

// The reply was stopped on request; the stored text is exactly seq 1..last_seq.
struct StreamCancelled {
  std::string message_id;
  int64_t last_seq = 0;
};

// Inference failed mid-reply; the partial text is stored with status interrupted.
struct StreamInterrupted {
  std::string message_id;
  int64_t last_seq = 0;
  std::string error;    // An ErrorCodeName, e.g. "inference_unavailable".
  std::string message;  // Human-readable detail.
  std::string partial_response;
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
  kRateLimited,   // Too many messages; `retry_after_ms` says when one would be accepted.
  kTooManyTurns,  // The user already has the maximum number of replies generating.
};

absl::string_view ErrorCodeName(ErrorCode code);

struct ErrorEvent {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string id;              // The client id of the frame that failed, when known.
  int64_t retry_after_ms = 0;  // For kRateLimited: sent as `retryAfterMs`.
};

struct Pong {};

struct HistoryMessage {
  std::string id;
  std::string role;  // "user", "assistant" or "system".
  std::string content;
  std::string status;  // "streaming", "complete", "cancelled", "interrupted" or "error".
};

struct History {
  std::string conversation_id;
  std::vector<HistoryMessage> messages;
};

using Event = std::variant<Ack, StreamStart, StreamToken, StreamComplete, ErrorEvent, Pong, History,
                           StreamCancelled, StreamInterrupted, Resumed, Heartbeat>;

// Short names used as metric labels ("ack", "stream_token", ...).
absl::string_view CommandName(const Command& command);
absl::string_view EventName(const Event& event);

}  // namespace parley::edge
