#include "edge/server/ws_session.h"

#include <utility>

#include "absl/strings/str_cat.h"
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
                      absl::Now()),
      // A few back-to-back keystroke events, then the steady rate.
      typing_bucket_(context.limits.typing_per_minute, /*burst=*/10, absl::Now()),
      queue_(context.limits.outbound, codec),
      write_watch_(ws_.get_executor()) {}

WsSession::~WsSession() {
  for (const std::string& conversation_id : joined_) {
    context_.rooms.Leave(user_id_, conversation_id, registry_key_);
  }
  if (accepted_) {
    context_.metrics.connections.Decrement();
  }
  if (counted_) {
    context_.open_websockets.fetch_sub(1);
  }
  context_.connections.Remove(registry_key_);
}

void WsSession::Run(http::request<http::string_body> request) {
  // Counted before the upgrade is answered, so connections are counted in the order their
  // requests arrived, whichever thread completes which handshake first.
  counted_ = true;
  over_connection_limit_ = context_.open_websockets.fetch_add(1) >= context_.limits.max_connections;
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
  if (over_connection_limit_) {
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
    queue_.DropQueued();
    write_watch_.cancel();
    ReleaseWaiters();
    return;
  }
  Dispatch();
  buffer_.consume(buffer_.size());
  // Reading pauses while the client is not taking what it asked for.
  if (!queue_.Full()) {
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
                               resume.last_seq,
                               /*announce=*/true);
                 },
                 [this](GetHistory& history) {
                   LoadHistory(*context_.persistence, Answer(), user_id_,
                               std::move(history.conversation_id));
                 },
                 [this](ListMessages& list) {
                   LoadMessagePage(*context_.persistence, Answer(), user_id_, std::move(list));
                 },
                 [this](ListConversations& list) {
                   LoadConversationPage(*context_.persistence, Answer(), user_id_, std::move(list));
                 },
                 [this](RegenerateReply& regenerate) {
                   SendMessage message;
                   message.id = std::move(regenerate.id);
                   message.model = std::move(regenerate.model);
                   message.regenerates_message_id = std::move(regenerate.message_id);
                   StartTurn(std::move(message));
                 },
                 [this](EditMessage& edit) {
                   SendMessage message;
                   message.id = std::move(edit.id);
                   message.content = std::move(edit.content);
                   message.model = std::move(edit.model);
                   message.replaces_message_id = std::move(edit.message_id);
                   StartTurn(std::move(message));
                 },
                 [this](JoinConversation& join) { Join(join.conversation_id); },
                 [this](LeaveConversation& leave) { Leave(leave.conversation_id); },
                 [this](Typing& typing) { RelayTyping(typing); },
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
                               common::ChildOf(trace_), registry_key_));
}

ReadAnswer WsSession::Answer() {
  return ReadAnswer{context_.tracker, ws_.get_executor(), weak_from_this()};
}

void WsSession::Join(const std::string& conversation_id) {
  if (joined_.contains(conversation_id)) {
    return Emit(Joined{conversation_id}, std::nullopt);
  }
  if (joined_.size() >= kMaxJoined) {
    return Emit(ErrorEvent{ErrorCode::kInvalidFrame,
                           absl::StrCat("a connection views at most ", kMaxJoined,
                                        " conversations; leave one first"),
                           ""},
                std::nullopt);
  }
  // Only the owner may view a conversation: persistence answers NOT_FOUND to anyone else.
  persistence_pb::GetConversationRequest request;
  request.set_user_id(user_id_);
  request.set_conversation_id(conversation_id);
  const uint64_t key = context_.tracker.Add([] {});
  context_.persistence->GetConversation(
      std::move(request), common::ChildOf(trace_),
      [self = shared_from_this(), conversation_id,
       key](absl::StatusOr<persistence_pb::GetConversationResponse> response) {
        net::post(self->ws_.get_executor(), [self, conversation_id, status = response.status()] {
          if (!status.ok()) {
            const bool missing = status.code() == absl::StatusCode::kNotFound;
            return self->Emit(
                ErrorEvent{missing ? ErrorCode::kNotFound : ErrorCode::kStorageUnavailable,
                           missing ? std::string("no such conversation")
                                   : absl::StrCat("cannot join: ", status.message()),
                           ""},
                std::nullopt);
          }
          if (self->closing_ || self->joined_.size() >= kMaxJoined) {
            return;
          }
          std::weak_ptr<WsSession> weak = self;
          self->context_.rooms.Join(self->user_id_, conversation_id, self->registry_key_,
                                    [weak, executor = self->ws_.get_executor()](Event event) {
                                      net::post(
                                          executor, [weak, event = std::move(event)]() mutable {
                                            if (std::shared_ptr<WsSession> target = weak.lock()) {
                                              target->Emit(std::move(event), std::nullopt);
                                            }
                                          });
                                    });
          self->joined_.insert(conversation_id);
          self->Emit(Joined{conversation_id}, std::nullopt);
        });
        self->context_.tracker.Remove(key);
      });
}

void WsSession::Leave(const std::string& conversation_id) {
  context_.rooms.Leave(user_id_, conversation_id, registry_key_);
  joined_.erase(conversation_id);
  Emit(Left{conversation_id}, std::nullopt);
}

void WsSession::RelayTyping(const Typing& typing) {
  if (!joined_.contains(typing.conversation_id)) {
    return Emit(
        ErrorEvent{ErrorCode::kInvalidFrame, "join the conversation before typing in it", ""},
        std::nullopt);
  }
  const RateDecision rate = typing_bucket_.TryAcquire(absl::Now());
  if (!rate.allowed) {
    return Emit(ErrorEvent{ErrorCode::kRateLimited, "too many typing events; slow down", "",
                           rate.RetryAfterMillis()},
                std::nullopt);
  }
  context_.rooms.Relay(user_id_, typing.conversation_id, registry_key_,
                       TypingRelay{typing.conversation_id, typing.is_typing});
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
  switch (queue_.Push(std::move(event), arrival)) {
    case OutboundQueue::Pushed::kQueued:
      break;
    case OutboundQueue::Pushed::kMerged:
      context_.metrics.coalesced_deltas_total.Increment();
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

bool WsSession::Writable() const { return closing_ || !queue_.Full(); }

void WsSession::WhenWritable(std::function<void()> resume) {
  if (Writable()) {
    resume();
    return;
  }
  waiting_for_writable_.push_back(std::move(resume));
}

void WsSession::DoWrite() {
  if (closing_) {
    return;
  }
  const OutboundQueue::Frame* frame = queue_.StartWrite();
  if (frame == nullptr) {
    return;
  }
  // Counted here rather than when queued: merged deltas are not frames of their own.
  context_.metrics.FrameSent(frame->type).Increment();
  if (frame->arrival.has_value()) {
    context_.metrics.added_latency.Observe(
        std::chrono::duration<double>(Clock::now() - *frame->arrival).count());
  }
  write_started_ = Clock::now();
  if (!watching_writes_ && context_.limits.slow_client_timeout > absl::ZeroDuration()) {
    watching_writes_ = true;
    WatchWriteProgress(absl::ToChronoNanoseconds(context_.limits.slow_client_timeout));
  }
  ws_.async_write(net::buffer(frame->data),
                  beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
}

void WsSession::OnWrite(beast::error_code ec, size_t /*bytes*/) {
  queue_.FinishWrite();
  if (ec) {
    closing_ = true;
    queue_.DropQueued();
    write_watch_.cancel();
  }
  if (queue_.Drained() || closing_) {
    ReleaseWaiters();
    if (!closing_) {
      DoRead();
    }
  }
  DoWrite();
}

void WsSession::WatchWriteProgress(Clock::duration wait) {
  // One timer per connection rather than one per write: it only checks, when it fires, how long
  // the current write has been going.
  write_watch_.expires_after(wait);
  write_watch_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->closing_ || !self->queue_.writing()) {
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

void WsSession::CloseSlowClient(absl::string_view reason) {
  if (closing_) {
    return;
  }
  context_.metrics.slow_client_closes_total.Increment();
  common::LogInfo("closing a slow client", {{"reason", std::string(reason.data(), reason.size())},
                                            {"queued_frames", std::to_string(queue_.frames())},
                                            {"queued_bytes", std::to_string(queue_.bytes())}});
  // The close frame queues behind the write in progress, so a client that starts reading again
  // still learns why (1008). One that never does would keep its socket, and the write stuck on
  // it, until the idle timeout: after a grace period its TCP connection is dropped.
  CloseOnStrand(websocket::close_code::policy_error);
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
  queue_.DropQueued();
  write_watch_.cancel();
  ReleaseWaiters();
  ws_.async_close(websocket::close_reason(code), [self = shared_from_this()](beast::error_code) {});
}

}  // namespace parley::edge
