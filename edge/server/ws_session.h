#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "common/trace_context.h"
#include "edge/limits/token_bucket.h"
#include "edge/protocol/codec.h"
#include "edge/server/outbound_queue.h"
#include "edge/server/server_context.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/history.h"
#include "edge/turn/turn.h"

namespace parley::edge {

// One client WebSocket. Lives on its own strand (the socket's executor) and
// through shared_from_this while an operation is pending. Exactly one
// async_write is in flight; the rest wait in a bounded queue (OutboundQueue).
// Reading pauses while the queue is above its high-water mark, and turns stop
// pulling tokens from inference until it drains (see EventSink). A client whose
// writes make no progress for ConnectionLimits::slow_client_timeout, or that
// lets more than its byte cap pile up, is closed with 1008.
class WsSession final : public EventSink, public std::enable_shared_from_this<WsSession> {
 public:
  // Conversations one connection may view at once; a client needs one or two.
  static constexpr size_t kMaxJoined = 32;
  // How long a slow client closed with 1008 has to read the close frame when
  // --slow_client_timeout_ms is 0 (otherwise it gets that long again).
  static constexpr absl::Duration kSlowCloseGrace = absl::Seconds(5);

  // `trace` comes from the upgrade request's `traceparent`; each turn is its child.
  WsSession(boost::asio::ip::tcp::socket&& socket, ServerContext& context, const Codec& codec,
            std::string user_id, common::TraceContext trace = common::NewTraceContext());
  ~WsSession() override;

  // Completes the upgrade `request` asked for.
  void Run(boost::beast::http::request<boost::beast::http::string_body> request);

  // Closes the connection with `code`. Any thread.
  void Close(boost::beast::websocket::close_code code);

  void Emit(Event event, std::optional<Clock::time_point> arrival) override;
  bool Writable() const override;
  void WhenWritable(std::function<void()> resume) override;

 private:
  void OnAccept(boost::beast::error_code ec);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void Dispatch();
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  // Watches the write in progress; see ConnectionLimits::slow_client_timeout.
  void WatchWriteProgress(Clock::duration wait);
  void CloseSlowClient(absl::string_view reason);
  void CloseOnStrand(boost::beast::websocket::close_code code);
  void StartTurn(SendMessage message);
  // Where the answer to a read (history, messages) goes.
  ReadAnswer Answer();
  void Join(const std::string& conversation_id);
  void Leave(const std::string& conversation_id);
  void RelayTyping(const Typing& typing);
  void CancelTurn(const std::string& message_id);
  void ReleaseWaiters();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  ServerContext& context_;
  const Codec& codec_;
  const std::string user_id_;
  const common::TraceContext trace_;
  uint64_t registry_key_ = 0;
  // This connection's share of the message rate (the user's is in UserLimits).
  TokenBucket message_bucket_;
  TokenBucket typing_bucket_;
  // Conversations this connection views (ConversationRooms), left when it ends.
  std::set<std::string> joined_;
  bool counted_ = false;                // Counted in ServerContext::open_websockets.
  bool over_connection_limit_ = false;  // Closed with 1013 once accepted.
  boost::beast::flat_buffer buffer_;
  OutboundQueue queue_;
  // Fires while a write is in progress, to find clients that stopped reading.
  boost::asio::steady_timer write_watch_;
  bool watching_writes_ = false;
  Clock::time_point write_started_;
  // A client that falls behind is logged once, not at every pause.
  bool reported_behind_ = false;
  // Turns this connection started that may still run, so `cancel` can find them.
  std::vector<std::weak_ptr<Turn>> turns_;
  std::vector<std::function<void()>> waiting_for_writable_;
  bool accepted_ = false;
  bool reading_ = false;
  bool closing_ = false;
};

}  // namespace parley::edge
