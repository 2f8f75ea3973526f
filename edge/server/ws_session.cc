#include "edge/server/ws_session.h"

#include <utility>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "common/log.h"
#include "edge/protocol/native_codec.h"
#include "edge/turn/history.h"
#include "edge/turn/resume.h"
#include "edge/turn/turn.h"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};

// True when the client offered `wanted` in Sec-WebSocket-Protocol.
bool OffersSubprotocol(const http::request<http::string_body>& request, absl::string_view wanted) {
  const auto header = request[http::field::sec_websocket_protocol];
  for (absl::string_view offered :
       absl::StrSplit(absl::string_view(header.data(), header.size()), ',')) {
    if (absl::StripAsciiWhitespace(offered) == wanted) {
      return true;
    }
  }
  return false;
}

}  // namespace

WsSession::WsSession(net::ip::tcp::socket&& socket, ServerContext& context, const Codec& codec,
                     std::string user_id, common::TraceContext trace)
    : ws_(std::move(socket)),
      context_(context),
      codec_(codec),
      user_id_(std::move(user_id)),
      trace_(std::move(trace)),
      message_bucket_(context.limits.messages_per_minute, context.limits.message_burst,
                      absl::Now()) {}

WsSession::~WsSession() {
  if (accepted_) {
    context_.metrics.connections.Decrement();
  }
  if (counted_) {
    context_.open_websockets.fetch_sub(1);
  }
  context_.connections.Remove(registry_key_);
}

void WsSession::Run(http::request<http::string_body> request) {
  const bool parley_v1 = OffersSubprotocol(request, NativeCodec::kSubprotocol);
  // Pings keep proxies with idle limits from cutting a connection that waits for a slow model;
  // a client that answers nothing for the idle timeout is gone.
  websocket::stream_base::timeout timeout{};
  timeout.handshake_timeout = absl::ToChronoMilliseconds(context_.limits.handshake_timeout);
  timeout.idle_timeout = absl::ToChronoMilliseconds(context_.limits.idle_timeout);
  timeout.keep_alive_pings = true;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator([parley_v1](websocket::response_type& response) {
    response.set(http::field::server, "parley-edge");
    if (parley_v1) {
      response.set(http::field::sec_websocket_protocol,
                   std::string(NativeCodec::kSubprotocol.data(), NativeCodec::kSubprotocol.size()));
    }
  }));
  ws_.read_message_max(context_.limits.max_frame_bytes);
  ws_.text(true);
  std::weak_ptr<WsSession> weak = weak_from_this();
  registry_key_ = context_.connections.Add([weak] {
    if (auto self = weak.lock()) {
      self->Close(websocket::close_code::going_away);
    }
  });
  ws_.async_accept(request, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
}

void WsSession::OnAccept(beast::error_code ec) {
  if (ec) {
    context_.metrics.HandshakeRefused("bad_handshake").Increment();
    return;
  }
  accepted_ = true;
  context_.metrics.connections.Increment();
  context_.metrics.connections_total.Increment();
  counted_ = true;
  if (context_.open_websockets.fetch_add(1) >= context_.limits.max_connections) {
    // Full: the client is told to come back later (or to another instance).
    context_.metrics.HandshakeRefused("too_many_connections").Increment();
    CloseOnStrand(websocket::close_code::try_again_later);
    return;
  }
  DoRead();
}

void WsSession::DoRead() {
  if (reading_ || closing_) {
    return;
  }
  reading_ = true;
  ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
}

void WsSession::OnRead(beast::error_code ec, size_t /*bytes*/) {
  reading_ = false;
  if (ec) {
    // Closed by the client, a protocol error (Beast already sent the close
    // code, e.g. 1009 for an oversized frame) or shutdown: the session ends
    // when its last pending operation does. Running turns carry on.
    if (ec != websocket::error::closed && ec != net::error::operation_aborted) {
      common::LogInfo("connection closed", {{"reason", ec.message()}});
    }
    closing_ = true;
    ReleaseWaiters();
    return;
  }
  Dispatch();
  buffer_.consume(buffer_.size());
  // Reading pauses while the client is not taking what it asked for.
  if (queue_.size() < kHighWater) {
    DoRead();
  }
}

void WsSession::Dispatch() {
  if (!ws_.got_text()) {
    context_.metrics.FrameReceived("invalid").Increment();
    Emit(ErrorEvent{ErrorCode::kInvalidFrame, "binary frames are not supported", ""}, std::nullopt);
    return;
  }
  const std::string frame = beast::buffers_to_string(buffer_.data());
  std::variant<Command, ErrorEvent> decoded = codec_.Decode(frame);
  if (ErrorEvent* error = std::get_if<ErrorEvent>(&decoded)) {
    context_.metrics.FrameReceived("invalid").Increment();
    Emit(std::move(*error), std::nullopt);
    return;
  }
  Command& command = std::get<Command>(decoded);
  context_.metrics.FrameReceived(CommandName(command)).Increment();
  std::visit(Overloaded{
                 [this](SendMessage& message) { StartTurn(std::move(message)); },
                 [this](Ping&) { Emit(Pong{}, std::nullopt); },
                 [this](edge::CancelTurn& cancel) { CancelTurn(cancel.message_id); },
                 [this](ResumeStream& resume) {
                   ResumeReply(*context_.persistence, context_.tracker, ws_.get_executor(),
                               weak_from_this(), user_id_, std::move(resume.message_id),
                               resume.last_seq, /*announce=*/true);
                 },
                 [this](GetHistory& history) {
                   LoadHistory(*context_.persistence, context_.tracker, ws_.get_executor(),
                               weak_from_this(), user_id_, std::move(history.conversation_id));
                 },
             },
             command);
}

void WsSession::StartTurn(SendMessage message) {
  if (context_.draining.load()) {
    Emit(ErrorEvent{ErrorCode::kShuttingDown, "this server is shutting down; reconnect and retry",
                    message.id},
         std::nullopt);
    return;
  }
  // The connection's bucket first, so one noisy connection cannot spend the user's budget.
  RateDecision rate = message_bucket_.TryAcquire(absl::Now());
  if (rate.allowed) {
    rate = context_.user_limits->AcquireMessage(user_id_);
  }
  if (!rate.allowed) {
    Emit(ErrorEvent{ErrorCode::kRateLimited, "too many messages; retry later", message.id,
                    rate.RetryAfterMillis()},
         std::nullopt);
    return;
  }
  absl::StatusOr<TurnSlot> slot = context_.user_limits->AcquireTurn(user_id_);
  if (!slot.ok()) {
    Emit(ErrorEvent{ErrorCode::kTooManyTurns,
                    "too many replies are being generated; wait for one to finish", message.id},
         std::nullopt);
    return;
  }
  std::erase_if(turns_, [](const std::weak_ptr<Turn>& turn) {
    std::shared_ptr<Turn> running = turn.lock();
    return running == nullptr || running->ended();
  });
  turns_.push_back(Turn::Start(context_.turn_deps, ws_.get_executor(), weak_from_this(), user_id_,
                               std::move(message), Clock::now(), *std::move(slot),
                               common::ChildOf(trace_)));
}

void WsSession::CancelTurn(const std::string& message_id) {
  // Turns run on this strand, so reading their state here is safe. A cancel for a reply that
  // already ended, or that this connection did not start, changes nothing.
  for (const std::weak_ptr<Turn>& weak : turns_) {
    std::shared_ptr<Turn> turn = weak.lock();
    if (turn != nullptr && !turn->ended() && turn->assistant_message_id() == message_id) {
      turn->Cancel(/*notify=*/true);
      return;
    }
  }
}

void WsSession::Emit(Event event, std::optional<Clock::time_point> arrival) {
  if (closing_) {
    return;
  }
  context_.metrics.FrameSent(EventName(event)).Increment();
  queue_.push_back(Outbound{codec_.Encode(event), arrival});
  if (queue_.size() > kMaxQueued) {
    context_.metrics.slow_client_closes_total.Increment();
    CloseOnStrand(websocket::close_code::policy_error);
    return;
  }
  DoWrite();
}

bool WsSession::Writable() const { return closing_ || queue_.size() < kHighWater; }

void WsSession::WhenWritable(std::function<void()> resume) {
  if (Writable()) {
    resume();
    return;
  }
  waiting_for_writable_.push_back(std::move(resume));
}

void WsSession::DoWrite() {
  if (writing_ || queue_.empty() || closing_) {
    return;
  }
  writing_ = true;
  const Outbound& next = queue_.front();
  if (next.arrival.has_value()) {
    context_.metrics.added_latency.Observe(
        std::chrono::duration<double>(Clock::now() - *next.arrival).count());
  }
  ws_.async_write(net::buffer(next.frame),
                  beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
}

void WsSession::OnWrite(beast::error_code ec, size_t /*bytes*/) {
  writing_ = false;
  if (ec) {
    closing_ = true;
    queue_.clear();
  } else {
    queue_.pop_front();
  }
  if (queue_.size() <= kLowWater || closing_) {
    ReleaseWaiters();
    if (!closing_) {
      DoRead();
    }
  }
  DoWrite();
}

void WsSession::ReleaseWaiters() {
  // Producers resume; a closing socket takes nothing, so nobody may wait on it:
  // a turn whose client went away still runs to its end and is stored.
  std::vector<std::function<void()>> waiting = std::move(waiting_for_writable_);
  waiting_for_writable_.clear();
  for (auto& resume : waiting) {
    resume();
  }
}

void WsSession::Close(websocket::close_code code) {
  net::dispatch(ws_.get_executor(),
                [self = shared_from_this(), code] { self->CloseOnStrand(code); });
}

void WsSession::CloseOnStrand(websocket::close_code code) {
  if (closing_ || !accepted_) {
    return;
  }
  closing_ = true;
  // The frame being written must outlive its async_write.
  queue_.erase(writing_ ? queue_.begin() + 1 : queue_.begin(), queue_.end());
  ReleaseWaiters();
  ws_.async_close(websocket::close_reason(code), [self = shared_from_this()](beast::error_code) {});
}

}  // namespace parley::edge
