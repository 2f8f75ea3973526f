#include "edge/server/engine_io_websocket.h"

#include <utility>

#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/http/field.hpp"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;

}  // namespace

EngineIoWebSocket::EngineIoWebSocket(net::ip::tcp::socket&& socket, size_t max_frame_bytes,
                                     std::chrono::milliseconds handshake_timeout)
    : ws_(std::move(socket)), handshake_timeout_(handshake_timeout) {
  ws_.read_message_max(max_frame_bytes);
}

void EngineIoWebSocket::Accept(http::request<http::string_body> request, Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  // Engine.IO's own heartbeat finds dead peers, so the WebSocket needs no pings or idle limit.
  websocket::stream_base::timeout timeout{};
  timeout.handshake_timeout = handshake_timeout_;
  timeout.idle_timeout = websocket::stream_base::none();
  timeout.keep_alive_pings = false;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
    response.set(http::field::server, "parley-edge");
  }));
  ws_.text(true);
  auto shared = std::make_shared<http::request<http::string_body>>(std::move(request));
  net::dispatch(ws_.get_executor(), [self = shared_from_this(), shared] {
    self->ws_.async_accept(*shared, [self, shared](beast::error_code ec) { self->OnAccept(ec); });
  });
}

void EngineIoWebSocket::OnAccept(beast::error_code ec) {
  if (ec) {
    Finish();
    return;
  }
  accepted_ = true;
  DoRead();
  DoWrite();
}

void EngineIoWebSocket::DoRead() {
  ws_.async_read(buffer_,
                 beast::bind_front_handler(&EngineIoWebSocket::OnRead, shared_from_this()));
}

void EngineIoWebSocket::OnRead(beast::error_code ec, size_t /*bytes*/) {
  if (ec) {
    // Closed by the peer, broken, or a frame over the limit (Beast has then closed with 1009, as
    // every endpoint of the edge does).
    Finish();
    return;
  }
  const bool binary = ws_.got_binary();
  std::string frame = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  if (callbacks_.on_frame) {
    callbacks_.on_frame(std::move(frame), binary);
  }
  if (!finished_) {
    DoRead();
  }
}

void EngineIoWebSocket::Send(std::string frame) {
  queued_bytes_.fetch_add(frame.size());
  net::post(ws_.get_executor(), [self = shared_from_this(), frame = std::move(frame)]() mutable {
    if (self->finished_) {
      self->queued_bytes_.fetch_sub(frame.size());
      return;
    }
    self->queue_.push_back(std::move(frame));
    if (self->queued_bytes_.load() > kHighWaterBytes) {
      self->over_high_water_ = true;
    }
    self->DoWrite();
  });
}

void EngineIoWebSocket::Close(websocket::close_code code) {
  net::post(ws_.get_executor(), [self = shared_from_this(), code] {
    if (self->close_requested_ || self->finished_) {
      return;
    }
    self->close_requested_ = true;
    self->close_code_ = code;
    self->DoWrite();
  });
}

void EngineIoWebSocket::DoWrite() {
  if (!accepted_ || writing_ || closing_ || finished_) {
    return;
  }
  if (queue_.empty()) {
    if (close_requested_) {
      closing_ = true;
      ws_.async_close(close_code_, [self = shared_from_this()](beast::error_code) {
        // The read loop ends with the close; Finish() runs from there or here, once.
        self->Finish();
      });
    }
    return;
  }
  writing_ = true;
  ws_.text(true);
  ws_.async_write(net::buffer(queue_.front()),
                  beast::bind_front_handler(&EngineIoWebSocket::OnWrite, shared_from_this()));
}

void EngineIoWebSocket::OnWrite(beast::error_code ec, size_t /*bytes*/) {
  writing_ = false;
  queued_bytes_.fetch_sub(queue_.front().size());
  queue_.pop_front();
  if (ec || finished_) {
    Finish();
    return;
  }
  if (over_high_water_ && queued_bytes_.load() <= kHighWaterBytes / 4) {
    over_high_water_ = false;
    if (callbacks_.on_drained) {
      callbacks_.on_drained();
    }
  }
  DoWrite();
}

void EngineIoWebSocket::Finish() {
  if (finished_) {
    return;
  }
  finished_ = true;
  // A frame being written stays until its write completes (with an error, once the socket is
  // closed below): the write still reads it.
  while (queue_.size() > (writing_ ? 1 : 0)) {
    queued_bytes_.fetch_sub(queue_.back().size());
    queue_.pop_back();
  }
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  if (callbacks_.on_closed) {
    auto on_closed = std::move(callbacks_.on_closed);
    callbacks_ = {};
    on_closed();
  }
}

}  // namespace parley::edge
