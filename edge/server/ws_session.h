#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "common/trace_context.h"
#include "edge/limits/token_bucket.h"
#include "edge/protocol/codec.h"
#include "edge/server/server_context.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/turn.h"

namespace parley::edge {

// One client WebSocket. Lives on its own strand (the socket's executor) and
// through shared_from_this while an operation is pending. Exactly one
// async_write is in flight; the rest wait in a bounded queue. Reading pauses
// while the queue is above its high-water mark, and turns stop pulling tokens
// from inference until it drains (see EventSink).
class WsSession final : public EventSink, public std::enable_shared_from_this<WsSession> {
 public:
  // Frames queued before turns stop pulling tokens and reading pauses.
  static constexpr size_t kHighWater = 64;
  static constexpr size_t kLowWater = 16;
  // A client that lets this many frames pile up is not reading: it is closed (1008).
  static constexpr size_t kMaxQueued = 1024;

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
  struct Outbound {
    std::string frame;
    std::optional<Clock::time_point> arrival;
  };

  void OnAccept(boost::beast::error_code ec);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void Dispatch();
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void CloseOnStrand(boost::beast::websocket::close_code code);
  void StartTurn(SendMessage message);
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
  bool counted_ = false;  // Counted in ServerContext::open_websockets.
  boost::beast::flat_buffer buffer_;
  std::deque<Outbound> queue_;
  // Turns this connection started that may still run, so `cancel` can find them.
  std::vector<std::weak_ptr<Turn>> turns_;
  std::vector<std::function<void()>> waiting_for_writable_;
  bool accepted_ = false;
  bool writing_ = false;
  bool reading_ = false;
  bool closing_ = false;
};

}  // namespace parley::edge
