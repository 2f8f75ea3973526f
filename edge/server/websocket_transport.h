#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "common/trace_context.h"
#include "edge/protocol/dialect_session.h"
#include "edge/server/outbound_queue.h"
#include "edge/turn/event_sink.h"

namespace parley::edge {

class ChatConnection;
class DialectMetrics;
struct ServerContext;

// Carries one dialect session over one client WebSocket. Lives on its own strand (the socket's
// executor) and through shared_from_this while an operation is pending. Exactly one async_write
// is in flight; the rest wait in a bounded queue (OutboundQueue). Reading pauses while the queue
// is above its high-water mark, and turns stop pulling tokens from inference until it drains
// (see EventSink). A client whose writes make no progress for
// ConnectionLimits::slow_client_timeout, or that lets more than its byte cap pile up, is closed
// with 1008. The chat itself (turns, rooms, limits) is the ChatConnection the session opens.
//
// An idle connection holds little more than its socket: nothing is read until the socket is
// readable (a pending read would hold its buffer), the read buffer is given back after a
// message when no more bytes are buffered, and while nothing is being read or written and no turn
// is streaming the Beast stream itself (its frame buffers and state, ~2.5 KiB) is dropped: the
// connection is "parked" on its bare socket and a new stream is opened on it, in the state the
// old one had between messages, when a frame arrives or something is to be sent. Pongs (answers
// to the keep-alive pings) are taken while parked without opening it. The keep-alive pings and
// the idle timeout are kept here, with Beast's semantics, across both states.
class WebSocketTransport final : public DialectHost,
                                 public EventSink,
                                 public std::enable_shared_from_this<WebSocketTransport> {
 public:
  // How long a slow client closed with 1008 has to read the close frame when
  // --slow_client_timeout_ms is 0 (otherwise it gets that long again).
  static constexpr absl::Duration kSlowCloseGrace = absl::Seconds(5);

  // `metrics` are those of the session's dialect; `subprotocol` is answered in the handshake
  // when not empty. `trace` comes from the upgrade request's `traceparent`.
  WebSocketTransport(boost::asio::ip::tcp::socket&& socket, ServerContext& context,
                     DialectMetrics& metrics, std::unique_ptr<DialectSession> session,
                     ConnectionRequest request, std::string subprotocol,
                     common::TraceContext trace = common::NewTraceContext());
  ~WebSocketTransport() override;

  // Completes the upgrade `request` asked for.
  void Run(boost::beast::http::request<boost::beast::http::string_body> request);

  // Closes the connection with `code` now, dropping what is queued. Any thread.
  void Shutdown(CloseCode code);

  using Stream = boost::beast::websocket::stream<boost::asio::ip::tcp::socket>;

  // DialectHost
  const ConnectionRequest& request() const override { return request_; }
  boost::asio::any_io_executor executor() override { return executor_; }
  absl::StatusOr<ChatUser> Authenticate(std::string_view token,
                                        std::string_view development_user_id) override;
  Chat& OpenChat(ChatUser user, ChatOptions options) override;
  Chat* chat() override;
  void Send(std::string frame) override;
  void SendBinary(std::string frame) override;
  void Close(CloseCode code) override;

  // EventSink: the chat's events, encoded by the session.
  void Emit(Event event, std::optional<Clock::time_point> arrival) override;
  bool Writable() const override;
  void WhenWritable(std::function<void()> resume) override;

 private:
  enum class Phase {
    kUpgrading,       // Answering the handshake.
    kOpen,            // Reading and writing.
    kClosingWritten,  // The dialect closed: what is queued goes out, then the close frame.
    kClosed,          // Closed or failed: nothing more is read, and only a write in flight ends.
  };

  void OnAccept(boost::beast::error_code ec);
  // Waits for the socket to be readable, then reads the next message (at once when the stream
  // holds some of it already).
  void DoRead();
  void WaitReadable();
  void OnReadable(boost::beast::error_code ec);
  void StartRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  // The socket under the stream, parked or not.
  boost::asio::ip::tcp::socket& Socket();
  // Applies the options every stream on this connection has once open.
  void SetOpenOptions();
  // Drops the stream when nothing needs it; reopens it on the socket.
  bool Parkable();
  void MaybePark();
  void Unpark();
  // While parked (or with no read pending): consumes the pongs at the front of what the client
  // sent. False when something else is there, for the stream to read.
  bool TakePongs();
  // Keep-alive pings and the idle timeout (ConnectionLimits::idle_timeout), as Beast keeps them:
  // the idle period restarts where a read starts.
  void RestartKeepAlive();
  void ArmKeepAlive();
  void OnKeepAliveTick();
  boost::asio::steady_timer& WriteWatch();
  void SendKeepAlivePing();
  void Queue(OutboundQueue::Pushed pushed);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  // Watches the write in progress; see ConnectionLimits::slow_client_timeout.
  void WatchWriteProgress(Clock::duration wait);
  void CloseSlowClient(absl::string_view reason);
  // Sends the close frame behind the write in progress; what is still queued is dropped.
  void CloseNow(CloseCode code);
  // Stops everything but the write in flight; the chat and the session are told once.
  void EnterClosed();
  void ReleaseWaiters();

  // The stream while the connection is active; empty while it is parked on `parked_`.
  std::optional<Stream> ws_;
  std::optional<boost::asio::ip::tcp::socket> parked_;
  const boost::asio::any_io_executor executor_;
  ServerContext& context_;
  DialectMetrics& metrics_;
  const std::unique_ptr<DialectSession> session_;
  const ConnectionRequest request_;
  const std::string subprotocol_;
  const common::TraceContext trace_;
  std::shared_ptr<ChatConnection> chat_;
  Phase phase_ = Phase::kUpgrading;
  // The code to close with once the queue is written (kClosingWritten).
  CloseCode close_code_ = CloseCode::kNormal;
  uint64_t registry_key_ = 0;
  bool counted_ = false;                // Counted in ServerContext::open_websockets.
  bool over_connection_limit_ = false;  // Closed with 1013 once accepted.
  boost::beast::flat_buffer buffer_;
  OutboundQueue queue_;
  // Fires while a write is in progress, to find clients that stopped reading. Made for the first
  // write after the connection was parked.
  std::unique_ptr<boost::asio::steady_timer> write_watch_;
  bool watching_writes_ = false;
  Clock::time_point write_started_;
  // A client that falls behind is logged once, not at every pause.
  bool reported_behind_ = false;
  bool reading_ = false;           // A stream read is pending.
  bool waiting_readable_ = false;  // A wait for readability is pending.
  std::vector<std::function<void()>> waiting_for_writable_;
  // Keep-alive: fires every idle_timeout / 2; a client that sent nothing for two ticks in a row
  // (one ping unanswered) is cut off. On the io_context rather than the strand, so that the wait
  // every idle connection keeps pending is small; its handler goes to the strand.
  using KeepAliveTimer =
      boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                        boost::asio::wait_traits<std::chrono::steady_clock>,
                                        boost::asio::io_context::executor_type>;
  KeepAliveTimer keep_alive_;
  int idle_ticks_ = 0;
  bool pinging_ = false;
};

}  // namespace parley::edge
