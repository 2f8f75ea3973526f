#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "edge/protocol/dialect_session.h"
#include "edge/protocol/fence_splitter.h"
#include "edge/protocol/messages.h"

namespace parley::edge {

// One event of the agent dialect (/ws/agent/stream and its SSE twin GET /agent/stream): a JSON
// object sent as one WebSocket text frame or one SSE `data:` line.
struct AgentEvent {
  absl::string_view type;  // Its "type", for metrics.
  std::string json;
  // Its place in the reply, the number in its SSE id, never decreasing along a stream: `start`,
  // `progress stored` and `progress generating` are 0, 1 and 2; then kTextOffset plus the reply
  // bytes consumed when the event's content was decided (FenceSplitter's positions); then the
  // events that end the reply. The same reply gives the same positions however its text was
  // chunked, so a stream can be continued after any of them.
  int64_t position = 0;
};

// What one edge event becomes in the agent dialect.
struct AgentOutput {
  std::vector<AgentEvent> events;
  // Set when these are the turn's last events: how the WebSocket closes after them.
  std::optional<CloseCode> close_code;
  // The reply is still waiting for its first token: an SSE response writes a comment so that
  // proxies see traffic (WebSockets have their pings).
  bool keep_alive = false;
};

// Turns the events of one chat turn into the agent dialect's events, for a connection that
// carries exactly one turn: `start`, `progress` at the stages `stored`, `generating` and `done`,
// `chain_of_thought` for the model's reasoning, `analysis_chunk` for prose and `code_chunk` for
// the inside of fenced code blocks (a `code_generated` with the whole block after each), then
// `complete` with the stored answer and `stream_end`. Pure: it holds the reply's state and no I/O.
class AgentStream {
 public:
  // Positions of the reply's text are its FenceSplitter positions plus this.
  static constexpr int64_t kTextOffset = 3;

  // A turn the connection starts itself.
  AgentStream() = default;

  // Continues reply `reply_id` of `conversation_id` for a client that has received every event
  // up to `after_position`. Fed the stored reply from its first delta, it sends only what comes
  // after that position, and `stream_end` whatever the position.
  static AgentStream Continuing(std::string reply_id, std::string conversation_id,
                                int64_t after_position);

  // The events before the turn's first edge event: `start` for a new turn; for a continuation,
  // the `progress` events the client has not seen.
  std::vector<AgentEvent> Opening() const;

  AgentOutput Map(const Event& event);

  // The reply's message id once known (after the turn's stream_start).
  const std::string& reply_id() const { return reply_id_; }
  // True once the turn's last events were mapped.
  bool ended() const { return ended_; }

 private:
  AgentStream(std::string reply_id, std::string conversation_id, int64_t after_position);

  // A continuation drops what the client has seen unless `even_if_seen`.
  void Add(AgentOutput& out, absl::string_view type, std::string json, int64_t position,
           bool even_if_seen = false) const;
  void AddPieces(AgentOutput& out, std::vector<FenceSplitter::Piece> pieces) const;
  // Closes the reply's text and adds `ending` (events of the given types and bodies), then
  // `stream_end`.
  void End(AgentOutput& out, std::vector<std::pair<absl::string_view, std::string>> ending,
           CloseCode close_code, bool even_if_seen = false);

  // Set for a continuation: events at or before this position were sent before.
  std::optional<int64_t> after_position_;
  FenceSplitter splitter_;
  std::string reply_id_;
  std::string conversation_id_;
  // The reply's text so far: what is stored, and `complete`'s answer.
  std::string answer_;
  bool ended_ = false;
};

// The event a connection without a question gets before it is closed (1008).
AgentEvent AgentErrorEvent(absl::string_view message);

// How an agent connection closes after a turn that failed with `code`.
CloseCode AgentCloseCode(ErrorCode code);

}  // namespace parley::edge
