#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "boost/beast/core/tcp_stream.hpp"
#include "common/trace_context.h"
#include "edge/protocol/dialect_session.h"
#include "edge/server/http_session.h"
#include "edge/server/outbound_queue.h"
#include "edge/turn/event_sink.h"

namespace parley::edge {

class DialectMetrics;

class ChatConnection;
struct Dialect;
struct ServerContext;

// Carries one dialect session over one HTTP response of Server-Sent Events: a 200
// `text/event-stream` in chunked encoding whose body is the session's frames (each a complete
// event) in order, ending when the session closes, the server shuts down, or the client goes
// away. The chat lives as long as the response; when the client goes, running turns carry on
// and are stored (the session may let a reconnect continue them). Like WebSocketTransport it
// lives on the connection's strand, keeps one write in flight with a bounded queue behind it,
// and holds turns back while the client does not keep up.
class EventStreamTransport final : public DialectHost,
                                   public EventSink,
                                   public std::enable_shared_from_this<EventStreamTransport> {
 public:
  // `response_headers` go on the response head (CORS, say).
  EventStreamTransport(ServerContext& context, HttpHandoff handoff,
                       std::unique_ptr<DialectSession> session, ConnectionRequest request,
                       std::vector<std::pair<std::string, std::string>> response_headers,
                       absl::string_view path_label, common::TraceContext trace);
  ~EventStreamTransport() override;

  // Sends the response head and opens the session.
  void Run();

  // Ends the response after what is queued (the server is shutting down). Any thread.
  void Shutdown();

  // DialectHost
  const ConnectionRequest& request() const override { return request_; }
  boost::asio::any_io_executor executor() override { return stream_.get_executor(); }
  absl::StatusOr<ChatUser> Authenticate(std::string_view token,
                                        std::string_view development_user_id) override;
  Chat& OpenChat(ChatUser user, ChatOptions options) override;
  Chat* chat() override;
  void Send(std::string frame) override;
  // Ends the response once what is queued is written; an event stream has no close code.
  void Close(CloseCode code) override;

  // EventSink
  void Emit(Event event, std::optional<Clock::time_point> arrival) override;
  bool Writable() const override;
  void WhenWritable(std::function<void()> resume) override;

 private:
  enum class Phase {
    kOpen,    // Writing events as they come.
    kEnding,  // The session closed: what is queued goes out, then the last chunk.
    kClosed,  // Done or failed: only a write in flight ends.
  };

  void Queue(OutboundQueue::Pushed pushed);
  void DoWrite();
  void OnWrite(bool last, boost::beast::error_code ec, size_t bytes);
  // Reads only to learn that the client went away (EventSource sends nothing more).
  void WatchForClose();
  void EnterClosed();
  void ReleaseWaiters();

  ServerContext& context_;
  DialectMetrics& metrics_;
  boost::beast::tcp_stream stream_;
  const std::unique_ptr<DialectSession> session_;
  const ConnectionRequest request_;
  const std::vector<std::pair<std::string, std::string>> response_headers_;
  const std::string path_label_;
  const common::TraceContext trace_;
  std::shared_ptr<ChatConnection> chat_;
  Phase phase_ = Phase::kOpen;
  uint64_t registry_key_ = 0;
  OutboundQueue queue_;
  // What is being written: the head, a chunk's size line, or the last chunk.
  std::string preamble_;
  bool head_written_ = false;
  bool writing_ = false;
  std::array<char, 512> scratch_;
  std::vector<std::function<void()>> waiting_for_writable_;
};

// GET /agent/stream: the agent dialect's event stream (see docs/dialects/agent.md). Answers
// 400 without a `question` or with a Last-Event-ID it cannot read, 401 for a refused token, 404
// when the Last-Event-ID names no reply of the user; otherwise streams the turn, or the rest of
// the reply the Last-Event-ID names.
void ServeAgentEventStream(ServerContext& context, const Dialect& dialect, HttpHandoff handoff);

}  // namespace parley::edge
