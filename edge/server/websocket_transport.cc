#include "edge/server/websocket_transport.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "absl/strings/string_view.h"
#include "boost/asio/bind_allocator.hpp"
#include "boost/asio/dispatch.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/version.hpp"
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

// Parking a connection drops its Beast stream between messages and opens a new one on the same
// socket later, in the state the old one was in: open, server role, no message half read, nothing
// buffered, no operation pending. Beast has no public way to tell that it buffered nothing nor to
// open a stream without a handshake, so both go through the stream's state (its `impl_type`,
// whose members are public), reached through an explicit instantiation (which may name private
// members). That state is Boost 1.81's: check it again before building with another Boost.
static_assert(BOOST_VERSION / 100 == 1081,
              "WebSocketTransport reads Beast's stream state as Boost 1.81 lays it out");

using Stream = WebSocketTransport::Stream;

template <auto kImpl>
struct StreamImplAccess {
  friend auto& StreamImpl(Stream& stream) { return *(stream.*kImpl); }
};
template struct StreamImplAccess<&Stream::impl_>;
auto& StreamImpl(Stream& stream);

using StreamStatus = std::remove_cvref_t<decltype(StreamImpl(std::declval<Stream&>()).status_)>;

// Nothing in the stream but what a new one opened on the socket would have.
bool StreamIsBetweenMessages(Stream& stream) {
  auto& impl = StreamImpl(stream);
  return impl.status_ == StreamStatus::open && impl.rd_done && impl.rd_buf.size() == 0 &&
         !impl.rd_block.is_locked() && !impl.wr_block.is_locked() && !impl.wr_cont &&
         !impl.op_rd.has_value() && !impl.op_wr.has_value() && !impl.op_ping.has_value() &&
         !impl.op_idle_ping.has_value() && !impl.op_close.has_value() &&
         !impl.op_r_rd.has_value() && !impl.op_r_close.has_value();
}

// The keep-alive tick reads Beast's idle counter, which each read that receives bytes sets to 0
// (reset_idle), whether or not Beast's own idle timeout is on (it is off here).
void MarkIdle(Stream& stream) { StreamImpl(stream).idle_counter = 1; }
bool ReceivedSinceMark(Stream& stream) { return StreamImpl(stream).idle_counter == 0; }

// Allocates the operations an idle connection keeps pending (its wait for readability, its
// keep-alive timer) at their own size. Through Asio's default allocator, which recycles the
// block its thread freed last, such an operation would take over whatever that was (often an
// HTTP or handshake write's, several times larger) for as long as the connection stays idle.
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>& /*other*/) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { ::operator delete(p, n * sizeof(T)); }
  friend bool operator==(const ExactAllocator&, const ExactAllocator&) { return true; }
};

// Every socket the edge accepts runs on its io_context (EdgeServer::io_), on a strand of it.
net::io_context& IoContextOf(const net::any_io_executor& executor) {
  return static_cast<net::io_context&>(net::query(executor, net::execution::context));
}

// A pong as a client sends it: FIN, opcode 0xA, masked, at most 125 bytes of payload.
constexpr uint8_t kPongFinOpcode = 0x8A;
constexpr uint8_t kMaskBit = 0x80;
constexpr size_t kMaxControlPayload = 125;
constexpr size_t kMaskedHeaderBytes = 2 + 4;

}  // namespace

WebSocketTransport::WebSocketTransport(net::ip::tcp::socket&& socket, ServerContext& context,
                                       DialectMetrics& metrics,
                                       std::unique_ptr<DialectSession> session,
                                       ConnectionRequest request, std::string subprotocol,
                                       common::TraceContext trace)
    : ws_(std::in_place, std::move(socket)),
      executor_(ws_->get_executor()),
      context_(context),
      metrics_(metrics),
      session_(std::move(session)),
      request_(std::move(request)),
      subprotocol_(std::move(subprotocol)),
      trace_(std::move(trace)),
      queue_(context.limits.outbound, *session_),
      keep_alive_(IoContextOf(executor_)) {}

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
  // (Kept here rather than by Beast, so that they go on while the connection is parked: see
  // OnKeepAliveTick.)
  SetOpenOptions();
  ws_->set_option(websocket::stream_base::decorator(
      [subprotocol = subprotocol_](websocket::response_type& response) {
        response.set(http::field::server, "parley-edge");
        if (!subprotocol.empty()) {
          response.set(http::field::sec_websocket_protocol, subprotocol);
        }
      }));
  std::weak_ptr<WebSocketTransport> weak = weak_from_this();
  registry_key_ = context_.connections.Add([weak] {
    if (auto self = weak.lock()) {
      self->Shutdown(CloseCode::kGoingAway);
    }
  });
  ws_->async_accept(request,
                    beast::bind_front_handler(&WebSocketTransport::OnAccept, shared_from_this()));
}

void WebSocketTransport::SetOpenOptions() {
  websocket::stream_base::timeout timeout{};
  // Also the close handshake's limit.
  timeout.handshake_timeout = absl::ToChronoMilliseconds(context_.limits.handshake_timeout);
  timeout.idle_timeout = websocket::stream_base::none();
  timeout.keep_alive_pings = false;
  ws_->set_option(timeout);
  ws_->read_message_max(context_.limits.max_frame_bytes);
  ws_->text(true);
}

net::steady_timer& WebSocketTransport::WriteWatch() {
  if (write_watch_ == nullptr) {
    write_watch_ = std::make_unique<net::steady_timer>(executor_);
  }
  return *write_watch_;
}

net::ip::tcp::socket& WebSocketTransport::Socket() {
  return ws_.has_value() ? ws_->next_layer() : *parked_;
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
    ws_->async_close(CloseReason(CloseCode::kTryAgainLater),
                     [self = shared_from_this()](beast::error_code) {});
    return;
  }
  if (context_.draining.load()) {
    // The upgrade was asked for before shutdown began (or while it drained): the client learns
    // at once, the way every open socket does, to reconnect elsewhere.
    phase_ = Phase::kClosed;
    ws_->async_close(CloseReason(CloseCode::kGoingAway),
                     [self = shared_from_this()](beast::error_code) {});
    return;
  }
  phase_ = Phase::kOpen;
  session_->Open(*this);
  DoRead();
  MaybePark();
}

absl::StatusOr<ChatUser> WebSocketTransport::Authenticate(std::string_view token,
                                                          std::string_view development_user_id) {
  return AuthenticateChatUser(context_, token, development_user_id);
}

Chat& WebSocketTransport::OpenChat(ChatUser user, ChatOptions options) {
  chat_ = std::make_shared<ChatConnection>(context_, metrics_, executor_, std::move(user),
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
  if (reading_ || waiting_readable_ || phase_ != Phase::kOpen) {
    return;
  }
  // Where Beast's read would start, so does the idle period, as Beast counts it.
  RestartKeepAlive();
  if (ws_.has_value() && StreamImpl(*ws_).rd_buf.size() > 0) {
    // The next message (or part of it) came with the last one.
    return StartRead();
  }
  WaitReadable();
}

void WebSocketTransport::WaitReadable() {
  // A pending read would reserve its buffer up front; waiting costs nothing.
  waiting_readable_ = true;
  Socket().async_wait(net::ip::tcp::socket::wait_read,
                      net::bind_allocator(ExactAllocator<void>(),
                                          beast::bind_front_handler(&WebSocketTransport::OnReadable,
                                                                    shared_from_this())));
}

void WebSocketTransport::OnReadable(beast::error_code ec) {
  waiting_readable_ = false;
  if (ec) {
    // The socket was closed (idle timeout, shutdown, a slow client cut off).
    return EnterClosed();
  }
  // Bytes (or the end of the stream) arrived: the client is there.
  idle_ticks_ = 0;
  if (phase_ == Phase::kClosed || reading_) {
    return;
  }
  if (phase_ == Phase::kOpen && TakePongs()) {
    // Still between messages: as in Beast, a pong only shows the client is there.
    return WaitReadable();
  }
  if (!ws_.has_value()) {
    Unpark();
  }
  StartRead();
}

bool WebSocketTransport::TakePongs() {
  const int fd = Socket().native_handle();
  for (;;) {
    uint8_t frame[kMaskedHeaderBytes + kMaxControlPayload];
    const ssize_t peeked = ::recv(fd, frame, sizeof(frame), MSG_PEEK | MSG_DONTWAIT);
    if (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return true;
    }
    // The end of the stream, an error, or anything but a whole pong: the stream reads it.
    if (peeked < 2 || frame[0] != kPongFinOpcode || (frame[1] & kMaskBit) == 0) {
      return false;
    }
    const size_t length = frame[1] & ~kMaskBit;
    if (length > kMaxControlPayload || static_cast<size_t>(peeked) < kMaskedHeaderBytes + length) {
      return false;
    }
    if (::recv(fd, frame, kMaskedHeaderBytes + length, MSG_DONTWAIT) !=
        static_cast<ssize_t>(kMaskedHeaderBytes + length)) {
      // Cannot happen (the bytes were there); the stream would be out of step.
      beast::error_code ignored;
      Socket().close(ignored);
      return true;
    }
  }
}

void WebSocketTransport::StartRead() {
  reading_ = true;
  ws_->async_read(buffer_,
                  beast::bind_front_handler(&WebSocketTransport::OnRead, shared_from_this()));
}

bool WebSocketTransport::Parkable() {
  if (phase_ != Phase::kOpen || !ws_.has_value() || reading_ || pinging_ || queue_.frames() > 0 ||
      !waiting_for_writable_.empty()) {
    return false;
  }
  // A reply streaming to this client would reopen the stream for every token.
  if (chat_ != nullptr && chat_->HasRunningTurns()) {
    return false;
  }
  return StreamIsBetweenMessages(*ws_);
}

void WebSocketTransport::MaybePark() {
  if (!Parkable()) {
    return;
  }
  if (ReceivedSinceMark(*ws_)) {
    idle_ticks_ = 0;
  }
  // A wait for readability pending on the socket moves with it.
  parked_.emplace(std::move(ws_->next_layer()));
  ws_.reset();
  queue_.ReleaseMemory();
  if (!watching_writes_) {
    write_watch_.reset();
  }
  buffer_ = beast::flat_buffer();
  waiting_for_writable_.shrink_to_fit();
}

void WebSocketTransport::Unpark() {
  ws_.emplace(std::move(*parked_));
  parked_.reset();
  SetOpenOptions();
  // What async_accept leaves once the handshake is answered.
  StreamImpl(*ws_).open(beast::role_type::server);
  MarkIdle(*ws_);
}

void WebSocketTransport::RestartKeepAlive() {
  if (ws_.has_value()) {
    MarkIdle(*ws_);
  }
  idle_ticks_ = 0;
  ArmKeepAlive();
}

void WebSocketTransport::ArmKeepAlive() {
  const absl::Duration idle = context_.limits.idle_timeout;
  if (idle <= absl::ZeroDuration() || idle == absl::InfiniteDuration()) {
    return;
  }
  keep_alive_.expires_after(absl::ToChronoNanoseconds(idle / 2));
  keep_alive_.async_wait(
      net::bind_allocator(ExactAllocator<void>(), [weak = weak_from_this()](beast::error_code ec) {
        if (ec) {
          return;
        }
        if (std::shared_ptr<WebSocketTransport> self = weak.lock()) {
          net::dispatch(self->executor_, [self] { self->OnKeepAliveTick(); });
        }
      }));
}

void WebSocketTransport::OnKeepAliveTick() {
  // As Beast's idle timer: half an idle timeout after the last read began, and every half idle
  // timeout after that, a ping if the client sent anything since the last one (or none went out
  // yet), else the connection is cut off.
  // A wait that ended as the timer was set again (a read began) is not a tick.
  if (phase_ == Phase::kClosed || KeepAliveTimer::clock_type::now() < keep_alive_.expiry()) {
    return;
  }
  if (ws_.has_value()) {
    if (ReceivedSinceMark(*ws_)) {
      idle_ticks_ = 0;
    }
    MarkIdle(*ws_);
    if (StreamImpl(*ws_).status_ == StreamStatus::closing) {
      // The client's close frame was answered and it has not ended the connection since.
      beast::error_code ignored;
      Socket().close(ignored);
      return;
    }
  }
  if (idle_ticks_ >= 1) {
    common::LogInfo("connection closed", {{"reason", "idle timeout"}});
    beast::error_code ignored;
    Socket().close(ignored);
    return;
  }
  ++idle_ticks_;
  SendKeepAlivePing();
  ArmKeepAlive();
}

void WebSocketTransport::SendKeepAlivePing() {
  if (pinging_) {
    return;
  }
  if (!ws_.has_value()) {
    // Opened for the ping; parked again once it is written.
    Unpark();
  }
  pinging_ = true;
  ws_->async_ping({}, [self = shared_from_this()](beast::error_code) {
    self->pinging_ = false;
    self->MaybePark();
  });
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
                    ws_->got_text() ? FrameType::kText : FrameType::kBinary);
  buffer_.consume(buffer_.size());
  if (ws_.has_value() && StreamImpl(*ws_).rd_buf.size() == 0) {
    // No more of the client's bytes are here: the buffer is allocated again for the next message.
    buffer_.shrink_to_fit();
  }
  // Reading pauses while the client is not taking what it asked for.
  if (!queue_.Full()) {
    DoRead();
  }
  MaybePark();
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
  if (!ws_.has_value()) {
    Unpark();
  }
  ws_->text(frame->type != kBinaryFrame);
  ws_->async_write(net::buffer(frame->data),
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
  MaybePark();
}

void WebSocketTransport::WatchWriteProgress(Clock::duration wait) {
  // One timer per connection rather than one per write: it only checks, when it fires, how long
  // the current write has been going.
  WriteWatch().expires_after(wait);
  WriteWatch().async_wait([self = shared_from_this()](beast::error_code ec) {
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
  WriteWatch().expires_after(absl::ToChronoNanoseconds(grace));
  WriteWatch().async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) {
      beast::error_code ignored;
      self->Socket().close(ignored);
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
  net::dispatch(executor_, [self = shared_from_this(), code] { self->CloseNow(code); });
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
  if (!ws_.has_value()) {
    Unpark();
  }
  ws_->async_close(CloseReason(code), [self = shared_from_this()](beast::error_code) {});
}

void WebSocketTransport::EnterClosed() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  phase_ = Phase::kClosed;
  queue_.DropQueued();
  if (write_watch_ != nullptr) {
    write_watch_->cancel();
  }
  keep_alive_.cancel();
  if (chat_ != nullptr) {
    chat_->Close();
  }
  session_->OnClosed();
  ReleaseWaiters();
}

}  // namespace parley::edge
