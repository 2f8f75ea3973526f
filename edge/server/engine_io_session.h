#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "edge/protocol/engine_io.h"
#include "edge/server/engine_io_websocket.h"

namespace parley::edge {

// Engine.IO settings; every field is a flag of parley-edge.
struct EngineIoOptions {
  // The server pings every interval; a client that has not answered within the timeout is gone
  // (its session closes). Socket.IO's defaults.
  absl::Duration ping_interval = absl::Milliseconds(25000);
  absl::Duration ping_timeout = absl::Milliseconds(20000);
  // Largest polling request body, and so the `maxPayload` the handshake announces.
  size_t max_payload = 64 * 1024;
  // A probe WebSocket that has not sent the upgrade packet by then is closed.
  absl::Duration upgrade_timeout = absl::Seconds(10);
  // Packets waiting for a client that does not poll, in bytes: over it the session closes.
  size_t max_queued_bytes = 1024 * 1024;
  // Over this many queued bytes the layer above should stop producing (Writable() false).
  size_t high_water_bytes = 256 * 1024;
};

// The HTTP answer to one long-polling request.
struct PollingAnswer {
  unsigned status = 200;
  std::string content_type;
  std::string body;
};

// One Engine.IO session: its id, the transport that carries it (long-polling until an upgrade,
// or a WebSocket), the heartbeat, and the packets waiting for the client. Polling requests of
// one session arrive on different HTTP connections; a WebSocket has a strand of its own: all of
// them hand their work to this session's strand, where all its state lives. The layer above
// (Socket.IO) sees only message packets. Lives through shared_from_this while it is open: the
// registry of sessions, its timers and its transports hold it.
class EngineIoSession final : public std::enable_shared_from_this<EngineIoSession> {
 public:
  using Strand = boost::asio::strand<boost::asio::any_io_executor>;
  using Answer = std::function<void(PollingAnswer)>;

  // The layer above; its methods are called on the session's strand.
  class Listener {
   public:
    virtual ~Listener() = default;
    // One message packet (a Socket.IO packet's text, or binary data the layer refuses).
    virtual void OnMessage(engine_io::Packet packet) = 0;
    // The session closed (the client left, timed out, broke the protocol, or Close()).
    virtual void OnClosed(absl::string_view reason) = 0;
    // Writable() turned true again.
    virtual void OnWritable() = 0;
  };

  EngineIoSession(Strand strand, std::string sid, EngineIoOptions options);
  ~EngineIoSession();

  const std::string& sid() const { return sid_; }
  Strand& strand() { return strand_; }
  void SetListener(std::shared_ptr<Listener> listener);

  // A handshake on long-polling: the open packet becomes the answer; then the heartbeat starts.
  // Any thread; `answer` is called once, on the session's strand.
  void OpenPolling(Answer answer);
  // A handshake on a WebSocket (transport=websocket without sid).
  void OpenWebSocket(std::shared_ptr<EngineIoWebSocket> socket,
                     boost::beast::http::request<boost::beast::http::string_body> request);

  // GET and POST of a polling session. Any thread; `answer` is called once, on the strand.
  void Poll(Answer answer);
  void Post(std::string body, Answer answer);
  // A WebSocket for this session (transport=websocket&sid=…): the probe of an upgrade.
  void Upgrade(std::shared_ptr<EngineIoWebSocket> socket,
               boost::beast::http::request<boost::beast::http::string_body> request);

  // On the strand: queues a message packet for the client.
  void Send(std::string message);
  // On the strand: false while the client is far enough behind that producers should pause.
  bool Writable() const;
  // Any thread: ends the session; the client sees its transport close (and reconnects unless
  // the layer above told it not to).
  void Close(std::string reason);

  // True once closed; a request for a closed session is answered like one for an unknown sid.
  bool closed() const { return closed_.load(); }

 private:
  enum class Phase {
    kPolling,    // Long-polling carries the session.
    kUpgrading,  // A probe WebSocket answered "3probe"; polling still carries packets.
    kWebSocket,  // The WebSocket carries the session; polling requests are refused.
    kClosed,
  };

  void StartHeartbeat();
  void SchedulePing();
  void OnPacket(engine_io::Packet packet, bool from_websocket);
  void OnProbeFrame(const std::shared_ptr<EngineIoWebSocket>& socket, std::string frame,
                    bool binary);
  void OnWebSocketFrame(std::string frame, bool binary);
  void CompleteUpgrade();
  // Writes what is queued to the transport that can take it now.
  void Flush();
  void AnswerPoll(std::vector<engine_io::Packet> packets);
  void CloseOnStrand(absl::string_view reason, bool tell_client);
  void MaybeWritable();

  friend class EngineIoSessions;

  Strand strand_;
  const std::string sid_;
  const EngineIoOptions options_;
  std::shared_ptr<Listener> listener_;
  Phase phase_ = Phase::kPolling;
  std::atomic<bool> closed_{false};
  // Packets waiting for the client while polling carries the session.
  std::deque<engine_io::Packet> outbox_;
  size_t outbox_bytes_ = 0;
  bool paused_producers_ = false;
  // The GET waiting for packets, if any.
  std::optional<Answer> pending_poll_;
  std::shared_ptr<EngineIoWebSocket> websocket_;
  std::shared_ptr<EngineIoWebSocket> probe_;
  boost::asio::steady_timer ping_timer_;
  boost::asio::steady_timer pong_timer_;
  boost::asio::steady_timer upgrade_timer_;
  bool awaiting_pong_ = false;
  // Takes the session out of the registry once closed.
  std::function<void()> unregister_;
};

// The open Engine.IO sessions of this process, by sid. Thread-safe.
class EngineIoSessions {
 public:
  // A new session with a fresh random sid, registered until it closes.
  std::shared_ptr<EngineIoSession> Create(EngineIoSession::Strand strand,
                                          const EngineIoOptions& options);
  // Null for an unknown (or closed) sid.
  std::shared_ptr<EngineIoSession> Find(absl::string_view sid) const;
  void Remove(absl::string_view sid);
  // Closes every session (shutdown).
  void CloseAll();
  size_t size() const;

 private:
  mutable absl::Mutex mutex_;
  std::map<std::string, std::shared_ptr<EngineIoSession>, std::less<>> sessions_
      ABSL_GUARDED_BY(mutex_);
};

// A new random session id: 20 URL-safe characters (120 bits), as Engine.IO servers make them.
std::string NewEngineIoSid();

}  // namespace parley::edge
