#include "edge/server/chat_connection.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/post.hpp"
#include "common/overloaded.h"
#include "edge/auth/authenticator.h"
#include "edge/server/http_session.h"
#include "edge/server/server_context.h"
#include "edge/turn/conversation_names.h"
#include "edge/turn/history.h"
#include "edge/turn/resume.h"
#include "edge/turn/turn.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;

using ::parley::common::Overloaded;

uint64_t NextRoomKey() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

}  // namespace

ChatConnection::ChatConnection(ServerContext& context, DialectMetrics& metrics,
                               net::any_io_executor executor, ChatUser user, ChatOptions options,
                               std::weak_ptr<EventSink> out, common::TraceContext trace)
    : context_(context),
      metrics_(metrics),
      executor_(std::move(executor)),
      user_(std::move(user)),
      options_(std::move(options)),
      out_(std::move(out)),
      trace_(std::move(trace)),
      room_key_(NextRoomKey()),
      message_bucket_(options_.messages_per_minute.value_or(context.limits.messages_per_minute),
                      options_.message_burst.value_or(context.limits.message_burst), absl::Now()),
      // A few back-to-back keystroke events, then the steady rate.
      typing_bucket_(context.limits.typing_per_minute, /*burst=*/10, absl::Now()),
      valid_until_(user_.valid_until) {}

ChatConnection::~ChatConnection() { Close(); }

void ChatConnection::CloseWhenTokenExpires(std::function<void()> close) {
  close_expired_ = std::move(close);
  WatchTokenExpiry();
}

void ChatConnection::WatchTokenExpiry() {
  if (closed_ || !close_expired_ || valid_until_ == absl::InfiniteFuture()) {
    return;
  }
  const absl::Duration left = valid_until_ - absl::Now();
  if (left <= absl::ZeroDuration()) {
    Emit(ErrorEvent{ErrorCode::kTokenExpired,
                    "the connection's token expired; connect again with a fresh one"},
         std::nullopt);
    std::function<void()> close = std::move(close_expired_);
    close_expired_ = nullptr;
    return close();
  }
  // A day at most per wait: a token valid for centuries must not overflow the timer, and the
  // check repeats anyway.
  if (expiry_timer_ == nullptr) {
    expiry_timer_ = std::make_unique<net::steady_timer>(executor_);
  }
  expiry_timer_->expires_after(absl::ToChronoNanoseconds(std::min(left, absl::Hours(24))));
  expiry_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (std::shared_ptr<ChatConnection> self = weak.lock(); self != nullptr && !ec) {
      self->WatchTokenExpiry();
    }
  });
}

void ChatConnection::RenewUserToken(const std::string& token) {
  absl::StatusOr<Identity> identity = context_.authenticator->Authenticate(
      ExtractedToken{token, TokenLocation::kAuthorizationHeader});
  if (!identity.ok()) {
    const std::optional<AuthRefusal> refusal = RefusalOf(identity.status());
    return Emit(ErrorEvent{ErrorCode::kUnauthenticated,
                           absl::StrCat("the token was refused (",
                                        refusal.has_value() ? AuthRefusalLabel(*refusal)
                                                            : absl::string_view("unauthenticated"),
                                        "); the connection keeps its current one")},
                std::nullopt);
  }
  if (identity->anonymous || identity->user_id != user_.id) {
    return Emit(ErrorEvent{ErrorCode::kUnauthenticated,
                           "the token names another user; open a new connection for them"},
                std::nullopt);
  }
  valid_until_ = context_.authenticator->ValidUntil(*identity);
  // The timer fires at the old time, finds the new one and waits again.
  Emit(TokenRenewed{valid_until_ == absl::InfiniteFuture()
                        ? ""
                        : absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", valid_until_,
                                           absl::UTCTimeZone())},
       std::nullopt);
}

void ChatConnection::Close() {
  if (options_.cancel_turns_on_close && !closed_) {
    for (const std::weak_ptr<Turn>& weak : turns_) {
      if (std::shared_ptr<Turn> turn = weak.lock(); turn != nullptr && !turn->ended()) {
        turn->Cancel();
      }
    }
  }
  for (const auto& [conversation_id, room] : joined_) {
    context_.rooms.Share(user_.id, room, room_key_,
                         MemberLeft{conversation_id, user_.id, user_.display_name});
    context_.rooms.Leave(user_.id, room, room_key_);
  }
  joined_.clear();
  closed_ = true;
  if (expiry_timer_ != nullptr) {
    expiry_timer_->cancel();
  }
}

bool ChatConnection::HasRunningTurns() const {
  return std::any_of(turns_.begin(), turns_.end(), [](const std::weak_ptr<Turn>& weak) {
    const std::shared_ptr<Turn> turn = weak.lock();
    return turn != nullptr && !turn->ended();
  });
}

void ChatConnection::Reject(ErrorEvent error) {
  metrics_.FrameReceived("invalid").Increment();
  Emit(std::move(error), std::nullopt);
}

void ChatConnection::Handle(Command command) {
  metrics_.FrameReceived(CommandName(command)).Increment();
  std::visit(Overloaded{
                 [this](SendMessage& message) { StartTurn(std::move(message)); },
                 [this](Ping&) { Emit(Pong{}, std::nullopt); },
                 [this](edge::CancelTurn& cancel) { CancelTurn(cancel.message_id); },
                 [this](ResumeStream& resume) {
                   ResumeReply(*context_.persistence, context_.tracker, executor_, weak_from_this(),
                               user_.id, std::move(resume.message_id), resume.last_seq,
                               /*announce=*/true);
                 },
                 [this](GetHistory& history) {
                   LoadHistory(*context_.persistence, Answer(), user_.id,
                               std::move(history.conversation_id));
                 },
                 [this](ListMessages& list) {
                   LoadMessagePage(*context_.persistence, Answer(), user_.id, std::move(list));
                 },
                 [this](ListConversations& list) {
                   LoadConversationPage(*context_.persistence, Answer(), user_.id, std::move(list));
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
                 [this](RenewToken& renew) { RenewUserToken(renew.token); },
             },
             command);
}

void ChatConnection::StartTurn(SendMessage message) {
  message.unknown_model = options_.unknown_model;
  if (context_.draining.load()) {
    Emit(ErrorEvent{ErrorCode::kShuttingDown, "this server is shutting down; reconnect and retry",
                    message.id},
         std::nullopt);
    return;
  }
  // The connection's bucket first, so one noisy connection cannot spend the user's budget.
  RateDecision rate = message_bucket_.TryAcquire(absl::Now());
  if (rate.allowed) {
    rate = context_.user_limits->AcquireMessage(user_.id);
  }
  if (!rate.allowed) {
    Emit(ErrorEvent{ErrorCode::kRateLimited, "too many messages; retry later", message.id,
                    rate.RetryAfterMillis()},
         std::nullopt);
    return;
  }
  absl::StatusOr<TurnSlot> slot = context_.user_limits->AcquireTurn(user_.id);
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
  // The server's, with this dialect's metrics.
  TurnDeps deps = context_.turn_deps;
  deps.metrics = &metrics_;
  if (held_branch_ == nullptr) {
    held_branch_ = std::make_shared<HeldBranch>();  // Not before: an idle connection holds none.
  }
  deps.held_branch = held_branch_;
  turns_.push_back(Turn::Start(deps, executor_, weak_from_this(), user_.id, std::move(message),
                               Clock::now(), *std::move(slot), common::ChildOf(trace_), room_key_));
}

ReadAnswer ChatConnection::Answer() {
  return ReadAnswer{context_.tracker, executor_, weak_from_this()};
}

void ChatConnection::Join(const std::string& conversation_id) {
  if (joined_.contains(conversation_id)) {
    return Emit(Joined{conversation_id}, std::nullopt);
  }
  if (joined_.size() >= kMaxJoined) {
    return Emit(ErrorEvent{ErrorCode::kInvalidFrame,
                           absl::StrCat("a connection views at most ", kMaxJoined,
                                        " conversations; leave one first"),
                           "", 0, conversation_id},
                std::nullopt);
  }
  // Only the owner may view a conversation: persistence answers NOT_FOUND to anyone else. A name
  // is the user's own by definition; one not used yet is a room of that name (followed by the
  // name on every edge) until its first message stores the conversation.
  const bool named = IsClientConversationName(conversation_id);
  persistence_pb::GetConversationRequest request;
  request.set_user_id(user_.id);
  if (named) {
    request.set_client_conversation_id(conversation_id);
  } else {
    request.set_conversation_id(conversation_id);
  }
  const uint64_t key = context_.tracker.Add([] {});
  context_.persistence->GetConversation(
      std::move(request), common::ChildOf(trace_),
      [self = shared_from_this(), conversation_id, named,
       key](absl::StatusOr<persistence_pb::GetConversationResponse> response) {
        const absl::Status status = response.status();
        std::string room = response.ok() ? response->conversation().id() : conversation_id;
        net::post(self->executor_, [self, conversation_id, named, status, room = std::move(room)] {
          if (named && status.code() == absl::StatusCode::kNotFound) {
            return self->OnJoinAllowed(conversation_id, room);
          }
          if (!status.ok()) {
            const bool missing = status.code() == absl::StatusCode::kNotFound;
            return self->Emit(
                ErrorEvent{missing ? ErrorCode::kNotFound : ErrorCode::kStorageUnavailable,
                           missing ? std::string("no such conversation")
                                   : absl::StrCat("cannot join: ", status.message()),
                           "", 0, conversation_id},
                std::nullopt);
          }
          self->OnJoinAllowed(conversation_id, room);
        });
        self->context_.tracker.Remove(key);
      });
}

void ChatConnection::OnJoinAllowed(const std::string& conversation_id, const std::string& room) {
  if (closed_ || joined_.size() >= kMaxJoined) {
    return;
  }
  std::weak_ptr<ChatConnection> weak = weak_from_this();
  context_.rooms.Join(
      user_.id, room, room_key_,
      [weak, executor = executor_](Event event) {
        net::post(executor, [weak, event = std::move(event)]() mutable {
          if (std::shared_ptr<ChatConnection> target = weak.lock()) {
            target->Emit(std::move(event), std::nullopt);
          }
        });
      },
      room == conversation_id ? "" : conversation_id,
      // Answered once the room hears the conversation's viewers on other edges too, so what
      // they do after `joined` reaches this client.
      [weak, executor = executor_, conversation_id] {
        net::post(executor, [weak, conversation_id] {
          // Not after a `leave` that came first.
          if (std::shared_ptr<ChatConnection> target = weak.lock();
              target != nullptr && target->joined_.contains(conversation_id)) {
            target->Emit(Joined{conversation_id}, std::nullopt);
          }
        });
      });
  joined_.insert_or_assign(conversation_id, room);
  context_.rooms.Share(user_.id, room, room_key_,
                       MemberJoined{conversation_id, user_.id, user_.display_name});
}

void ChatConnection::Leave(const std::string& conversation_id) {
  auto joined = joined_.find(conversation_id);
  if (joined != joined_.end()) {
    context_.rooms.Share(user_.id, joined->second, room_key_,
                         MemberLeft{conversation_id, user_.id, user_.display_name});
    context_.rooms.Leave(user_.id, joined->second, room_key_);
    joined_.erase(joined);
  }
  Emit(Left{conversation_id}, std::nullopt);
}

void ChatConnection::RelayTyping(const Typing& typing) {
  auto joined = joined_.find(typing.conversation_id);
  if (joined == joined_.end()) {
    return Emit(ErrorEvent{ErrorCode::kInvalidFrame, "join the conversation before typing in it",
                           "", 0, typing.conversation_id},
                std::nullopt);
  }
  const RateDecision rate = typing_bucket_.TryAcquire(absl::Now());
  if (!rate.allowed) {
    return Emit(ErrorEvent{ErrorCode::kRateLimited, "too many typing events; slow down", "",
                           rate.RetryAfterMillis(), typing.conversation_id},
                std::nullopt);
  }
  context_.rooms.Share(user_.id, joined->second, room_key_,
                       TypingRelay{joined->second, typing.is_typing});
}

void ChatConnection::CancelTurn(const std::string& message_id) {
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

void ChatConnection::Emit(Event event, std::optional<Clock::time_point> arrival) {
  if (closed_) {
    return;
  }
  if (std::shared_ptr<EventSink> out = out_.lock()) {
    out->Emit(std::move(event), arrival);
  }
}

bool ChatConnection::Writable() const {
  std::shared_ptr<EventSink> out = out_.lock();
  return closed_ || out == nullptr || out->Writable();
}

void ChatConnection::WhenWritable(std::function<void()> resume) {
  std::shared_ptr<EventSink> out = out_.lock();
  if (closed_ || out == nullptr) {
    // Nobody reads a closed connection, so nobody may wait on it: the turn runs to its end.
    return resume();
  }
  out->WhenWritable(std::move(resume));
}

absl::StatusOr<ChatUser> AuthenticateChatUser(ServerContext& context, std::string_view token,
                                              std::string_view development_user_id) {
  ExtractedToken extracted;
  if (!token.empty()) {
    extracted = ExtractedToken{std::string(token), TokenLocation::kAuthorizationHeader};
  }
  absl::StatusOr<Identity> identity = context.authenticator->Authenticate(extracted);
  if (!identity.ok()) {
    const std::optional<AuthRefusal> refusal = RefusalOf(identity.status());
    context.metrics
        .HandshakeRefused(refusal.has_value() ? AuthRefusalLabel(*refusal) : "unauthenticated")
        .Increment();
    return identity.status();
  }
  if (!identity->anonymous) {
    const absl::Time valid_until = context.authenticator->ValidUntil(*identity);
    std::string display_name =
        identity->display_name.empty() ? identity->user_id : std::move(identity->display_name);
    return ChatUser{std::move(identity->user_id), std::move(display_name), valid_until};
  }
  std::string user_id =
      development_user_id.empty() ? DevelopmentUserId("") : std::string(development_user_id);
  return ChatUser{user_id, user_id};
}

}  // namespace parley::edge
