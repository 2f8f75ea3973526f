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

using Command = std::variant<SendMessage, Ping, GetHistory>;

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
};

absl::string_view ErrorCodeName(ErrorCode code);

struct ErrorEvent {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string id;  // The client id of the frame that failed, when known.
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

using Event =
    std::variant<Ack, StreamStart, StreamToken, StreamComplete, ErrorEvent, Pong, History>;

// Short names used as metric labels ("ack", "stream_token", ...).
absl::string_view CommandName(const Command& command);
absl::string_view EventName(const Event& event);

}  // namespace parley::edge
