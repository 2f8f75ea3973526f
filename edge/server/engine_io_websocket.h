#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/beast/websocket/stream.hpp"

namespace parley::edge {

// One WebSocket that carries an Engine.IO session's packets, one packet per frame: a session that
// started on it (transport=websocket) or one upgraded to it from long-polling. It only moves
// frames; the session (EngineIoSession) decides what they mean. Lives on its own strand (the
// socket's executor) and through shared_from_this while an operation is pending; one write is in
// flight at a time and the rest wait in a queue whose size the session reads for flow control.
class EngineIoWebSocket final : public std::enable_shared_from_this<EngineIoWebSocket> {
 public:
  struct Callbacks {
    // A frame arrived (text, or binary when `binary`). Called on this socket's strand.
    std::function<void(std::string frame, bool binary)> on_frame;
    // The socket is closed (by either side, or broken); called once, on this socket's strand.
    std::function<void()> on_closed;
    // The write queue emptied after being over `kHighWaterBytes`.
    std::function<void()> on_drained;
  };

  // Above this many queued bytes the session stops pulling tokens (Writable() false).
  static constexpr size_t kHighWaterBytes = 256 * 1024;

  EngineIoWebSocket(boost::asio::ip::tcp::socket&& socket, size_t max_frame_bytes,
                    std::chrono::milliseconds handshake_timeout);

  // Completes the upgrade `request` asked for; then reads until closed.
  void Accept(boost::beast::http::request<boost::beast::http::string_body> request,
              Callbacks callbacks);

  // Queues a text frame. Any thread.
  void Send(std::string frame);
  // Closes with `code` once the frames queued so far are written. Any thread.
  void Close(boost::beast::websocket::close_code code);

  // Bytes queued and not yet written. Any thread.
  size_t queued_bytes() const { return queued_bytes_.load(); }

 private:
  void OnAccept(boost::beast::error_code ec);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void Finish();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  const std::chrono::milliseconds handshake_timeout_;
  Callbacks callbacks_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> queue_;  // The front one is being written while `writing_`.
  std::atomic<size_t> queued_bytes_{0};
  bool over_high_water_ = false;
  bool accepted_ = false;
  bool writing_ = false;
  bool close_requested_ = false;
  boost::beast::websocket::close_code close_code_ = boost::beast::websocket::close_code::normal;
  bool closing_ = false;
  bool finished_ = false;
};

}  // namespace parley::edge
