#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edge/protocol/agent_stream.h"
#include "edge/protocol/dialect_session.h"
#include "edge/protocol/sse_events.h"

namespace parley::edge {

// One connection of the agent dialect: the turn its query string asks for
// (`?question=…&dataset=…&model=…`), started as soon as the connection is open, and its events
// (AgentStream). Over a WebSocket (/ws/agent/stream) each event is a text frame and closing the
// socket stops the reply; over an event stream (GET /agent/stream) each event is a Server-Sent
// Event whose id names the reply and the event's position, a dropped response does not stop
// the reply, and a reconnect continues it (Continuing).
class AgentSession final : public DialectSession {
 public:
  enum class Transport { kWebSocket, kEventStream };

  explicit AgentSession(Transport transport);
  // An event stream that continues the reply `after` names from the event after it, without
  // asking anything again.
  static std::unique_ptr<AgentSession> Continuing(EventStreamPosition after,
                                                  std::string conversation_id);
  ~AgentSession() override;

  void Open(DialectHost& host) override;
  void OnFrame(std::string_view frame, FrameType type) override;
  void Encode(const Event& event, Frames& frames) override;
  void OnClosed() override;

 private:
  AgentSession(Transport transport, AgentStream stream, std::string continued_reply_id);

  // The frame (or Server-Sent Event) of `event`, appended to `frames`. An event stream holds
  // what comes before the reply has an id, so that every event can name it.
  void Add(AgentEvent event, Frames& frames);
  std::string Frame(const AgentEvent& event) const;

  const Transport transport_;
  AgentStream stream_;
  // Set for a continuation: the reply it follows.
  const std::string continued_reply_id_;
  DialectHost* host_ = nullptr;
  Chat* chat_ = nullptr;
  std::vector<AgentEvent> held_;
  // Expires with the session, for what was posted to its strand.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// What the model is told about the dataset a question is about.
std::string DatasetContext(std::string_view dataset);

}  // namespace parley::edge
