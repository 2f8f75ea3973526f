#include "edge/server/websocket_transport.h"

#include <utility>

#include "absl/strings/string_view.h"
#include "boost/asio/dispatch.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "common/log.h"
#include "edge/server/chat_connection.h"
#include "edge/server/http_session.h"
#include "edge/server/server_context.h"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;

// The metrics label of a frame SendBinary queued, which also marks it to go out as binary.
constexpr absl::string_view kBinaryFrame = "binary";

websocket::close_reason CloseReason(CloseCode code) {
  return websocket::close_reason(static_cast<websocket::close_code>(code));
}

}  // namespace

WebSocketTransport::WebSocketTransport(net::ip::tcp::socket&& socket, ServerContext& context,
                                       DialectMetrics& metrics,
                                       std::unique_ptr<DialectSession> session,
                                       ConnectionRequest request, std::string subprotocol,
                                       common::TraceContext trace)
    : ws_(std::move(socket)),
      context_(context),
      metrics_(metrics),
      session_(std::move(session)),
      request_(std::move(request)),
      subprotocol_(std::move(subprotocol)),
      trace_(std::move(trace)),
      queue_(context.limits.outbound, *session_),
      write_watch_(ws_.get_executor()) {}

WebSocketTransport::~WebSocketTransport() {
  if (phase_ != Phase::kUpgrading) {
    metrics_.connections.Decrement();
  }
  if (counted_) {
    context_.open_websockets.fetch_sub(1);
  }
  context_.connections.Remove(registry_key_);
}

void WebSocketTransport::Run(http::request<http::string_body> request) {
  // Counted before the upgrade is answered, so connections are counted in the order their
  // requests arrived, whichever thread completes which handshake first.
  counted_ = true;
  over_connection_limit_ = context_.open_websockets.fetch_add(1) >= context_.limits.max_connections;
  // Pings keep proxies with idle limits from cutting a connection that waits for a slow model;
  // a client that answers nothing for the idle timeout is gone.
  websocket::stream_base::timeout timeout{};
  timeout.handshake_timeout = absl::ToChronoMilliseconds(context_.limits.handshake_timeout);
  timeout.idle_timeout = absl::ToChronoMilliseconds(context_.limits.idle_timeout);
  timeout.keep_alive_pings = true;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator(
      [subprotocol = subprotocol_](websocket::response_type& response) {
        response.set(http::field::server, "parley-edge");
        if (!subprotocol.empty()) {
          response.set(http::field::sec_websocket_protocol, subprotocol);
        }
      }));
  ws_.read_message_max(context_.limits.max_frame_bytes);
  ws_.text(true);
  std::weak_ptr<WebSocketTransport> weak = weak_from_this();
  registry_key_ = context_.connections.Add([weak] {
    if (auto self = weak.lock()) {
      self->Shutdown(CloseCode::kGoingAway);
    }
  });
  ws_.async_accept(request,
                   beast::bind_front_handler(&WebSocketTransport::OnAccept, shared_from_this()));
}

void WebSocketTransport::OnAccept(beast::error_code ec) {
  if (ec) {
    // Still upgrading: the transport ends with this handler, having opened nothing.
    context_.metrics.HandshakeRefused("bad_handshake").Increment();
    return;
  }
  metrics_.connections.Increment();
  metrics_.connections_total.Increment();
  if (over_connection_limit_) {
    // Full: the client is told to come back later (or to another instance); its dialect never
    // starts.
    context_.metrics.HandshakeRefused("too_many_connections").Increment();
    // A refused connection holds no place: the next one may have it as soon as this client
    // reads its close code.
    counted_ = false;
    context_.open_websockets.fetch_sub(1);
    phase_ = Phase::kClosed;
    ws_.async_close(CloseReason(CloseCode::kTryAgainLater),
                    [self = shared_from_this()](beast::error_code) {});
    return;
  }
  if (context_.draining.load()) {
    // The upgrade was asked for before shutdown began (or while it drained): the client learns
    // at once, the way every open socket does, to reconnect elsewhere.
    phase_ = Phase::kClosed;
    ws_.async_close(CloseReason(CloseCode::kGoingAway),
                    [self = shared_from_this()](beast::error_code) {});
    return;
  }
  phase_ = Phase::kOpen;
  session_->Open(*this);
  DoRead();
}

absl::StatusOr<ChatUser> WebSocketTransport::Authenticate(std::string_view token,
                                                          std::string_view development_user_id) {
  return AuthenticateChatUser(context_, token, development_user_id);
}

Chat& WebSocketTransport::OpenChat(ChatUser user, ChatOptions options) {
  chat_ = std::make_shared<ChatConnection>(context_, metrics_, ws_.get_executor(), std::move(user),
                                           std::move(options), weak_from_this(), trace_);
  chat_->CloseWhenTokenExpires([weak = weak_from_this()] {
    if (std::shared_ptr<WebSocketTransport> self = weak.lock()) {
      self->Close(CloseCode::kTokenExpired);
    }
  });
  return *chat_;
}

Chat* WebSocketTransport::chat() { return chat_.get(); }

void WebSocketTransport::DoRead() {
  if (reading_ || phase_ != Phase::kOpen) {
    return;
  }
  reading_ = true;
  ws_.async_read(buffer_,
                 beast::bind_front_handler(&WebSocketTransport::OnRead, shared_from_this()));
}

void WebSocketTransport::OnRead(beast::error_code ec, size_t /*bytes*/) {
  reading_ = false;
  if (ec) {
    // Closed by the client, a protocol error (Beast already sent the close
    // code, e.g. 1009 for an oversized frame) or shutdown: the connection ends
    // when its last pending operation does. Running turns carry on.
    if (ec != websocket::error::closed && ec != net::error::operation_aborted) {
      common::LogInfo("connection closed", {{"reason", ec.message()}});
    }
    return EnterClosed();
  }
  if (phase_ != Phase::kOpen) {
    return;
  }
  const net::const_buffer data = buffer_.data();
  session_->OnFrame(std::string_view(static_cast<const char*>(data.data()), data.size()),
                    ws_.got_text() ? FrameType::kText : FrameType::kBinary);
  buffer_.consume(buffer_.size());
  // Reading pauses while the client is not taking what it asked for.
  if (!queue_.Full()) {
    DoRead();
  }
}

void WebSocketTransport::Emit(Event event, std::optional<Clock::time_point> arrival) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  Queue(queue_.Push(std::move(event), arrival));
}

void WebSocketTransport::Send(std::string frame) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  Queue(queue_.PushFrame(std::move(frame), "protocol"));
}

void WebSocketTransport::SendBinary(std::string frame) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  Queue(queue_.PushFrame(std::move(frame), kBinaryFrame));
}

void WebSocketTransport::Queue(OutboundQueue::Pushed pushed) {
  switch (pushed) {
    case OutboundQueue::Pushed::kQueued:
      break;
    case OutboundQueue::Pushed::kMerged:
      metrics_.coalesced_deltas_total.Increment();
      break;
    case OutboundQueue::Pushed::kOverLimit:
      // Only events that ignore Writable() pile up this far (a turn's last frames, answers to
      // reads, relayed typing): whatever they are, memory per connection stays bounded.
      return CloseSlowClient("outbound queue over --max_outbound_bytes");
  }
  if (!reported_behind_ && queue_.Full()) {
    reported_behind_ = true;
    common::LogInfo("client is not keeping up; its replies are paused",
                    {{"queued_frames", std::to_string(queue_.frames())},
                     {"queued_bytes", std::to_string(queue_.bytes())}});
  }
  DoWrite();
}

bool WebSocketTransport::Writable() const { return phase_ != Phase::kOpen || !queue_.Full(); }

void WebSocketTransport::WhenWritable(std::function<void()> resume) {
  if (Writable()) {
    resume();
    return;
  }
  waiting_for_writable_.push_back(std::move(resume));
}

void WebSocketTransport::DoWrite() {
  if (phase_ != Phase::kOpen && phase_ != Phase::kClosingWritten) {
    return;
  }
  const OutboundQueue::Frame* frame = queue_.StartWrite();
  if (frame == nullptr) {
    if (phase_ == Phase::kClosingWritten && !queue_.writing()) {
      CloseNow(close_code_);
    }
    return;
  }
  // Counted here rather than when queued: merged deltas are not frames of their own.
  metrics_.FrameSent(frame->type).Increment();
  if (frame->arrival.has_value()) {
    metrics_.added_latency.Observe(
        std::chrono::duration<double>(Clock::now() - *frame->arrival).count());
  }
  write_started_ = Clock::now();
  if (!watching_writes_ && context_.limits.slow_client_timeout > absl::ZeroDuration()) {
    watching_writes_ = true;
    WatchWriteProgress(absl::ToChronoNanoseconds(context_.limits.slow_client_timeout));
  }
  ws_.text(frame->type != kBinaryFrame);
  ws_.async_write(net::buffer(frame->data),
                  beast::bind_front_handler(&WebSocketTransport::OnWrite, shared_from_this()));
}

void WebSocketTransport::OnWrite(beast::error_code ec, size_t /*bytes*/) {
  queue_.FinishWrite();
  if (ec) {
    EnterClosed();
  }
  if (queue_.Drained() || phase_ == Phase::kClosed) {
    ReleaseWaiters();
    DoRead();
  }
  DoWrite();
}

void WebSocketTransport::WatchWriteProgress(Clock::duration wait) {
  // One timer per connection rather than one per write: it only checks, when it fires, how long
  // the current write has been going.
  write_watch_.expires_after(wait);
  write_watch_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->phase_ == Phase::kClosed || !self->queue_.writing()) {
      self->watching_writes_ = false;
      return;
    }
    const Clock::duration timeout =
        absl::ToChronoNanoseconds(self->context_.limits.slow_client_timeout);
    const Clock::duration stalled = Clock::now() - self->write_started_;
    if (stalled >= timeout) {
      self->watching_writes_ = false;
      return self->CloseSlowClient("no write progress for --slow_client_timeout");
    }
    self->WatchWriteProgress(timeout - stalled);
  });
}

void WebSocketTransport::CloseSlowClient(absl::string_view reason) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  metrics_.slow_client_closes_total.Increment();
  common::LogInfo("closing a slow client", {{"reason", std::string(reason.data(), reason.size())},
                                            {"queued_frames", std::to_string(queue_.frames())},
                                            {"queued_bytes", std::to_string(queue_.bytes())}});
  // The close frame queues behind the write in progress, so a client that starts reading again
  // still learns why (1008). One that never does would keep its socket, and the write stuck on
  // it, until the idle timeout: after a grace period its TCP connection is dropped.
  CloseNow(CloseCode::kPolicy);
  const absl::Duration grace = context_.limits.slow_client_timeout > absl::ZeroDuration()
                                   ? context_.limits.slow_client_timeout
                                   : kSlowCloseGrace;
  write_watch_.expires_after(absl::ToChronoNanoseconds(grace));
  write_watch_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) {
      beast::get_lowest_layer(self->ws_).close();
    }
  });
}

void WebSocketTransport::ReleaseWaiters() {
  // Producers resume; a closing socket takes nothing, so nobody may wait on it:
  // a turn whose client went away still runs to its end and is stored.
  std::vector<std::function<void()>> waiting = std::move(waiting_for_writable_);
  waiting_for_writable_.clear();
  for (auto& resume : waiting) {
    resume();
  }
}

void WebSocketTransport::Shutdown(CloseCode code) {
  net::dispatch(ws_.get_executor(), [self = shared_from_this(), code] { self->CloseNow(code); });
}

void WebSocketTransport::Close(CloseCode code) {
  if (phase_ != Phase::kOpen) {
    return;
  }
  phase_ = Phase::kClosingWritten;
  close_code_ = code;
  if (chat_ != nullptr) {
    chat_->Close();
  }
  ReleaseWaiters();
  DoWrite();
}

void WebSocketTransport::CloseNow(CloseCode code) {
  if (phase_ == Phase::kUpgrading || phase_ == Phase::kClosed) {
    return;
  }
  EnterClosed();
  ws_.async_close(CloseReason(code), [self = shared_from_this()](beast::error_code) {});
}

void WebSocketTransport::EnterClosed() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  phase_ = Phase::kClosed;
  queue_.DropQueued();
  write_watch_.cancel();
  if (chat_ != nullptr) {
    chat_->Close();
  }
  session_->OnClosed();
  ReleaseWaiters();
}

}  // namespace parley::edge
