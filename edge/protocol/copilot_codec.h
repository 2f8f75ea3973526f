#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "edge/protocol/messages.h"

// The copilot dialect on /copilot (a web app's copilot hook): `{"action":"message",...}` in;
// acknowledgment, typing, stream_start, stream_token, stream_complete, message,
// stream_interrupted, suggestions and error out, each stamped with `timestamp` in integer
// milliseconds since the epoch. Documented in docs/dialects/copilot.md.
namespace parley::edge::copilot {

// Name of the dialect in logs and in the `dialect` label of the edge's metrics.
inline constexpr absl::string_view kDialectName = "copilot";

// What the acknowledgment frame tells the user while the reply is prepared.
inline constexpr std::string_view kAcknowledgmentText = "Message received. Processing...";

// A decoded `message` frame. `message.id` is empty: the frame carries no idempotency key, so the
// connection gives each one its own.
struct CopilotRequest {
  SendMessage message;
  // False asks for the whole reply in one `message` frame instead of stream_token frames.
  bool streaming = true;
};

// Decodes one client frame. Anything a client can get wrong comes back as the ErrorEvent to send
// to it (as an `error` frame); the connection stays open.
std::variant<CopilotRequest, ErrorEvent> DecodeFrame(std::string_view frame);

// The frames, one function each, with exactly the fields the dialect defines.
std::string AcknowledgmentFrame(int64_t timestamp_ms);
std::string TypingFrame(int64_t timestamp_ms);
std::string StreamStartFrame(std::string_view conversation_id, std::string_view message_id,
                             std::string_view model, int64_t timestamp_ms);
std::string StreamTokenFrame(std::string_view token, std::string_view conversation_id,
                             int64_t timestamp_ms);

// What stream_complete and the non-streaming `message` report about a finished reply.
struct ReplySummary {
  std::string conversation_id;
  std::string message_id;
  std::string model;
  std::string finish_reason;
  int32_t completion_tokens = 0;
};
std::string StreamCompleteFrame(const ReplySummary& reply, int64_t timestamp_ms);
std::string MessageFrame(std::string_view content, const ReplySummary& reply, int64_t timestamp_ms);
std::string StreamInterruptedFrame(std::string_view conversation_id, std::string_view error,
                                   std::string_view partial_response, int64_t timestamp_ms);
std::string SuggestionsFrame(const std::vector<std::string>& suggestions,
                             std::string_view conversation_id, int64_t timestamp_ms);
std::string ErrorFrame(std::string_view error, int64_t timestamp_ms);

// A reply that completed, for the follow-up suggestions the connection may ask for after it.
struct CompletedReply {
  std::string conversation_id;
  std::string message_id;
  std::string model;
  std::string question;  // The user message it answers.
  std::string answer;    // The reply's whole text.
};

// Turns the edge's events for one connection into copilot frames. The events of a turn name the
// client's request (ack, error) or the reply (tokens, end), never both, and the frames need the
// conversation and the request's `streaming` choice, so the encoder remembers each request from
// Expect() until its reply ends. Pure: no I/O and no clock (the caller passes the time).
class CopilotEncoder {
 public:
  struct Output {
    std::vector<std::string> frames;
    // Set when a reply completed: what a follow-up suggestions generation needs.
    std::optional<CompletedReply> completed;
  };

  // Registers a request about to start a turn: `request_id` is its SendMessage id.
  void Expect(std::string request_id, bool streaming, std::string question);

  Output Encode(const Event& event, int64_t timestamp_ms);

  // Requests and replies not ended yet.
  size_t pending() const { return replies_.size(); }

 private:
  struct Reply {
    std::string request_id;
    bool streaming = true;
    std::string question;
    std::string conversation_id;  // Known from the ack on.
    std::string message_id;       // Known from stream_start on.
    std::string model;
    std::string text;  // The reply so far: the non-streaming frame and suggestions need it.
    bool acked = false;
  };

  Reply* ByRequest(const std::string& request_id);
  Reply* ByMessage(const std::string& message_id);
  void Forget(const Reply* reply);

  std::vector<Reply> replies_;
};

}  // namespace parley::edge::copilot
