#pragma once

#include <atomic>
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
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "common/trace_context.h"
#include "edge/protocol/dialect_session.h"
#include "edge/protocol/engine_io.h"
#include "edge/server/engine_io_websocket.h"
#include "edge/turn/event_sink.h"

namespace parley::edge {

class ChatConnection;
class DialectMetrics;
struct Dialect;
struct HttpHandoff;
struct ServerContext;

using engine_io::EngineIoOptions;

// The HTTP answer to one long-polling request.
struct PollingAnswer {
  unsigned status = 200;
  std::string content_type;
  std::string body;
};

// One Engine.IO session that started on HTTP long-polling: the transport of a Socket.IO client
// whose chat outlives each of its requests. A GET takes the frames waiting for the client (or
// waits for the next one), a POST brings the client's; both may arrive on any HTTP connection,
// and hand their work to this session's strand, where all its state, its dialect session and its
// chat live. The client may move the session to a WebSocket (the upgrade: "2probe", "3probe",
// the pending poll ended with a noop, "5"); from then on that WebSocket carries the same dialect
// session and chat. Frames are Engine.IO packets; their meaning is the dialect session's
// (SocketIoSession), so the heartbeat and the Socket.IO protocol are the same on every
// transport. Registered by sid in EngineIoSessions until it ends; a request for a sid that is not
// there (another edge replica, a restart, an expired session) is answered as Engine.IO servers
// do, so the client reconnects.
class EngineIoSession final : public DialectHost,
                              public EventSink,
                              public std::enable_shared_from_this<EngineIoSession> {
 public:
  using Strand = boost::asio::strand<boost::asio::any_io_executor>;
  using Answer = std::function<void(PollingAnswer)>;

  EngineIoSession(ServerContext& context, Strand strand, std::string sid,
                  std::unique_ptr<DialectSession> session, ConnectionRequest request,
                  common::TraceContext trace);
  ~EngineIoSession() override;

  const std::string& sid() const { return sid_; }

  // The handshake: the dialect opens (its open packet answers `answer`). The session is one of
  // the process's --max_connections, whichever transport carries it; over that limit the
  // handshake is answered 503 and the session ends. Any thread; `answer` runs once, on the
  // session's strand, like every Answer below.
  void Start(Answer answer);
  // A GET and a POST of this session.
  void Poll(Answer answer);
  void Post(std::string body, Answer answer);
  // A WebSocket for this session (transport=websocket&sid=…): the probe of an upgrade.
  void Upgrade(std::shared_ptr<EngineIoWebSocket> socket,
               boost::beast::http::request<boost::beast::http::string_body> request);
  // Ends the session now (shutdown). Any thread.
  void Shutdown(CloseCode code);

  // DialectHost
  const ConnectionRequest& request() const override { return request_; }
  boost::asio::any_io_executor executor() override { return strand_; }
  absl::StatusOr<ChatUser> Authenticate(std::string_view token,
                                        std::string_view development_user_id) override;
  Chat& OpenChat(ChatUser user, ChatOptions options) override;
  Chat* chat() override;
  void Send(std::string frame) override;
  void Close(CloseCode code) override;

  // EventSink
  void Emit(Event event, std::optional<Clock::time_point> arrival) override;
  bool Writable() const override;
  void WhenWritable(std::function<void()> resume) override;

 private:
  enum class Phase {
    kPolling,    // Long-polling carries the session.
    kUpgrading,  // A probe WebSocket answered "3probe"; polling still carries frames.
    kWebSocket,  // The WebSocket carries the session; polling requests are refused.
    kClosing,    // The dialect closed: the next poll takes what is left and a close packet.
    kClosed,
  };

  // A frame for the client (an encoded Engine.IO packet) and the label it is counted under in
  // the frames-sent metric: the event it tells, or "protocol" for the dialect's and Engine.IO's
  // own packets.
  struct OutboxFrame {
    std::string data;
    absl::string_view type;
  };

  void Queue(std::string frame, absl::string_view type);
  // Hands what is queued to the transport that can take it now.
  void Flush();
  // Answers the waiting GET with `frames`; each is counted as sent.
  void AnswerPoll(std::vector<OutboxFrame> frames);
  void OnProbeFrame(const std::shared_ptr<EngineIoWebSocket>& socket, std::string frame,
                    bool binary);
  void CompleteUpgrade();
  void DropProbe(const std::shared_ptr<EngineIoWebSocket>& socket);
  void OnWebSocketFrame(std::string frame, bool binary);
  void MaybeWritable();
  // Gives back this session's place among --max_connections; once only.
  void ReleaseConnection();
  // Stops everything; the chat and the dialect session are told once.
  void Finish();
  // Takes the session out of EngineIoSessions; once only.
  void Unregister();

  ServerContext& context_;
  DialectMetrics& metrics_;
  Strand strand_;
  const std::string sid_;
  const std::unique_ptr<DialectSession> session_;
  const ConnectionRequest request_;
  const common::TraceContext trace_;
  std::shared_ptr<ChatConnection> chat_;
  Phase phase_ = Phase::kPolling;
  uint64_t registry_key_ = 0;
  // Whether this session holds one of --max_connections (from its handshake until it ends).
  bool counted_ = false;
  // Frames waiting for the client while polling carries the session.
  std::deque<OutboxFrame> outbox_;
  size_t outbox_bytes_ = 0;
  // The GET waiting for frames, if any.
  std::optional<Answer> pending_poll_;
  std::shared_ptr<EngineIoWebSocket> websocket_;
  std::shared_ptr<EngineIoWebSocket> probe_;
  boost::asio::steady_timer upgrade_timer_;
  // A closing session whose client does not come back for its last frames ends anyway.
  boost::asio::steady_timer linger_timer_;
  std::vector<std::function<void()>> waiting_for_writable_;
  // Takes the session out of the registry once it ends.
  std::function<void()> unregister_;

  friend class EngineIoSessions;
};

// The open Engine.IO sessions of this process, by sid. Thread-safe.
class EngineIoSessions {
 public:
  // A new session with a fresh random sid, registered until it ends.
  std::shared_ptr<EngineIoSession> Create(ServerContext& context, EngineIoSession::Strand strand,
                                          std::unique_ptr<DialectSession> session,
                                          ConnectionRequest request, common::TraceContext trace);
  // Null for an unknown (or ended) sid.
  std::shared_ptr<EngineIoSession> Find(absl::string_view sid) const;
  size_t size() const;

 private:
  void Remove(const std::string& sid);

  mutable absl::Mutex mutex_;
  std::map<std::string, std::shared_ptr<EngineIoSession>, std::less<>> sessions_
      ABSL_GUARDED_BY(mutex_);
};

// A new random session id: 20 URL-safe characters (120 bits), as Engine.IO servers make them.
std::string NewEngineIoSid();

// Serves the HTTP side of Engine.IO on a dialect's path (Dialect::serve_http): the long-polling
// handshake, GET and POST of a session, CORS preflights, and WebSocket upgrades that name a
// session (TakesEngineIoUpgrade). A WebSocket without a sid is a session of its own and goes to a
// WebSocketTransport like any dialect's.
void ServeEngineIo(ServerContext& context, const Dialect& dialect, HttpHandoff handoff);
bool TakesEngineIoUpgrade(absl::string_view query);

}  // namespace parley::edge
