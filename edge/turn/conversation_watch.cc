#include "edge/turn/conversation_watch.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "common/log.h"
#include "edge/turn/conversation_names.h"
#include "edge/turn/history.h"
#include "edge/turn/resume.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;

// Back-off between attempts to follow a conversation (or a reply) again after its replica went
// away: quick at first, since another replica is usually there, and bounded.
constexpr absl::Duration kFirstRetry = absl::Milliseconds(50);
constexpr absl::Duration kLongestRetry = absl::Seconds(2);
// A reply is followed for at most this long (as a resume is).
constexpr absl::Duration kFollowDeadline = absl::Minutes(10);
// A typing signal that cannot reach persistence in this time, from when its client sent it, is
// not worth delivering any more: it is dropped, and persistence refuses it if it arrives later.
constexpr absl::Duration kPublishDeadline = absl::Seconds(2);
// A typing signal from another edge this much older than its event time is not shown (the watch
// or this edge was held up); persistence drops such signals by its own --signal_max_age_ms too.
// The same budget as publishing's: a signal its sender's edge gave up on (it waited that long for
// a stopped persistence, which then stored it after all) is never shown when that replica wakes.
constexpr absl::Duration kShowMaxAge = kPublishDeadline;
// Persistence's limit on a signal's payload (Signal.payload).
constexpr size_t kMaxPayloadBytes = 1024;

void SetTimestamp(absl::Time time, google::protobuf::Timestamp* timestamp) {
  const int64_t seconds = absl::ToUnixSeconds(time);
  timestamp->set_seconds(seconds);
  timestamp->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
}

absl::Time TimeOf(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

absl::Duration RetryDelay(int attempt) {
  thread_local absl::BitGen bits;
  const absl::Duration base = std::min(kLongestRetry, kFirstRetry * (1 << std::min(attempt, 6)));
  // Jitter, so the edges that lost one replica do not all come back at the same instant.
  return base * absl::Uniform(bits, 0.5, 1.0);
}

// A display name cut to the payload limit, on a UTF-8 character boundary.
std::string Payload(const std::string& text) {
  if (text.size() <= kMaxPayloadBytes) {
    return text;
  }
  size_t cut = kMaxPayloadBytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return text.substr(0, cut);
}

// Status codes after which watching again cannot help: the conversation is gone or not the
// user's.
bool Permanent(const absl::Status& status) {
  return status.code() == absl::StatusCode::kNotFound ||
         status.code() == absl::StatusCode::kInvalidArgument ||
         status.code() == absl::StatusCode::kPermissionDenied;
}

class PersistenceRoomLink final : public RoomLink,
                                  public std::enable_shared_from_this<PersistenceRoomLink> {
 public:
  // `conversation_id` is a stored conversation's id, or a client's name of one (stored or not).
  PersistenceRoomLink(PersistenceRoomLinks::Deps& deps, std::string user_id,
                      std::string conversation_id, std::weak_ptr<ConversationRoom> room)
      : deps_(deps),
        strand_(net::make_strand(deps.executor)),
        user_id_(std::move(user_id)),
        name_(IsClientConversationName(conversation_id) ? conversation_id : ""),
        conversation_id_(name_.empty() ? std::move(conversation_id) : ""),
        room_(std::move(room)),
        retry_(strand_) {}

  void Start() {
    deps_.watches.Increment();
    net::post(strand_, [self = shared_from_this()] { self->Watch(); });
  }

  void WhenReady(std::function<void()> ready) override {
    net::post(strand_, [self = shared_from_this(), ready = std::move(ready)]() mutable {
      if (self->ready_ || self->closed_ || self->failed_) {
        return ready();
      }
      self->waiting_.push_back(std::move(ready));
    });
  }

  void Publish(uint64_t from, const Event& event) override {
    net::post(strand_, [self = shared_from_this(), from, event, now = absl::Now()] {
      self->PublishOnStrand(from, event, now);
    });
  }

  void PublishOnStrand(uint64_t from, const Event& event, absl::Time now) {
    if (closed_) {
      return;
    }
    persistence_pb::PublishSignalRequest request;
    request.set_user_id(user_id_);
    // A name not stored yet is signalled by its name, to the edges that follow it.
    if (conversation_id_.empty()) {
      request.set_client_conversation_id(name_);
    } else {
      request.set_conversation_id(conversation_id_);
    }
    persistence_pb::Signal& signal = *request.mutable_signal();
    signal.set_origin(absl::StrCat(deps_.origin_prefix, from));
    SetTimestamp(now, request.mutable_sent_time());
    // Joins and leaves wait out a short outage of persistence; typing is worth nothing late.
    absl::Time until = now + deps_.persistence.ready_timeout() + kPublishDeadline;
    if (const auto* typing = std::get_if<TypingRelay>(&event)) {
      signal.set_kind(persistence_pb::SIGNAL_KIND_TYPING);
      signal.set_payload(typing->is_typing ? "1" : "0");
      until = now + kPublishDeadline;
      SetTimestamp(until, request.mutable_expire_time());
    } else if (const auto* joined = std::get_if<MemberJoined>(&event)) {
      signal.set_kind(persistence_pb::SIGNAL_KIND_JOIN);
      signal.set_payload(Payload(joined->display_name));
    } else if (const auto* left = std::get_if<MemberLeft>(&event)) {
      signal.set_kind(persistence_pb::SIGNAL_KIND_LEAVE);
      signal.set_payload(Payload(left->display_name));
    } else {
      return;
    }
    Send(std::move(request), until, /*retried=*/false);
  }

  void Close() override {
    net::post(strand_, [self = shared_from_this()] {
      if (self->closed_) {
        return;
      }
      self->closed_ = true;
      self->retry_.cancel();
      if (self->stream_ != nullptr) {
        self->stream_->Cancel();
      }
      for (auto& [id, follower] : self->followers_) {
        follower.retry->cancel();
        if (follower.stream != nullptr) {
          follower.stream->Cancel();
        }
      }
      self->followers_.clear();
      self->RunWaiting();
      self->deps_.watches.Decrement();
    });
  }

 private:
  // A reply another edge is streaming, followed from storage.
  struct Follower {
    std::shared_ptr<WatchStream> stream;
    std::unique_ptr<net::steady_timer> retry;
    int64_t last_seq = 0;
    std::string text;  // For stream_interrupted's partialResponse.
    int attempts = 0;
    bool finished = false;
  };

  // Shows `event`, which names the conversation as Id() does, to every viewer here.
  void Show(const Event& event) {
    if (closed_) {
      return;
    }
    if (std::shared_ptr<ConversationRoom> room = room_.lock();
        room != nullptr && !room->retired()) {
      room->Relay(/*from=*/0, event, Id());
    }
  }

  // The stored conversation's id, or the client's name while it is not known to be stored.
  const std::string& Id() const { return conversation_id_.empty() ? name_ : conversation_id_; }

  // The name this link follows is stored as `conversation_id`: its room moves into that
  // conversation's, which this link feeds from now on. False when that room has a link of its
  // own; this one then closes.
  bool Adopt(const std::string& conversation_id) {
    if (conversation_id.empty()) {
      return true;
    }
    std::shared_ptr<ConversationRoom> room =
        deps_.rooms.Stored(user_id_, name_, conversation_id, this);
    if (room == nullptr) {
      Close();
      return false;
    }
    conversation_id_ = conversation_id;
    room_ = room;
    return true;
  }

  void RunWaiting() {
    std::vector<std::function<void()>> waiting;
    waiting.swap(waiting_);
    for (std::function<void()>& ready : waiting) {
      ready();
    }
  }

  // Publishes `request` before `until`, or not at all.
  void Send(persistence_pb::PublishSignalRequest request, absl::Time until, bool retried) {
    deps_.persistence.PublishSignal(
        request, until,
        [self = shared_from_this(), request, until,
         retried](absl::StatusOr<persistence_pb::PublishSignalResponse> response) mutable {
          if (response.ok()) {
            self->deps_.signals_published.Increment();
            return;
          }
          const bool typing = request.signal().kind() == persistence_pb::SIGNAL_KIND_TYPING;
          if (typing && (response.status().code() == absl::StatusCode::kDeadlineExceeded ||
                         absl::Now() >= until)) {
            // Too late to show: persistence could not be reached in time (or said so itself).
            self->deps_.signals_expired.Increment();
            return;
          }
          // Once, soon: the replica that took the call may just have gone, and the channel
          // moves to another.
          if (response.status().code() == absl::StatusCode::kUnavailable && !retried &&
              absl::Now() + kFirstRetry < until) {
            auto timer = std::make_shared<net::steady_timer>(self->strand_);
            timer->expires_after(absl::ToChronoNanoseconds(kFirstRetry));
            timer->async_wait([self, timer, until, request = std::move(request)](
                                  const boost::system::error_code& error) mutable {
              if (!error) {
                self->Send(std::move(request), until, /*retried=*/true);
              }
            });
            return;
          }
          self->deps_.signals_failed.Increment();
        });
  }

  void Watch() {
    if (closed_) {
      return;
    }
    persistence_pb::WatchConversationRequest request;
    request.set_user_id(user_id_);
    if (conversation_id_.empty()) {
      request.set_client_conversation_id(name_);
    } else {
      request.set_conversation_id(conversation_id_);
    }
    stream_ = deps_.persistence.WatchConversation(
        std::move(request), common::NewTraceContext(),
        ConversationWatchStream::Callbacks{
            .on_message =
                [self = shared_from_this()](persistence_pb::WatchConversationResponse response) {
                  net::post(self->strand_,
                            [self, response = std::move(response)] { self->OnWatched(response); });
                },
            .on_done =
                [self = shared_from_this()](absl::Status status) {
                  net::post(self->strand_,
                            [self, status = std::move(status)] { self->OnWatchDone(status); });
                },
        });
  }

  void OnWatched(const persistence_pb::WatchConversationResponse& response) {
    if (closed_ || stream_ == nullptr) {
      return;
    }
    if (response.has_ready()) {
      if (conversation_id_.empty() && !response.ready().conversation_id().empty() &&
          !Adopt(response.ready().conversation_id())) {
        return;
      }
      if (attempts_ > 0) {
        common::LogInfo("conversation watch restored",
                        {{"conversation_id", Id()}, {"attempts", absl::StrCat(attempts_)}});
      }
      ready_ = true;
      attempts_ = 0;
      deps_.watches_ready.Increment();
      RunWaiting();
    } else if (response.has_event()) {
      // Watching a name, the first event is its conversation's creation.
      if (conversation_id_.empty() && !Adopt(response.event().conversation_id())) {
        return;
      }
      OnEvent(response.event());
    }
    // A gap needs nothing: viewers keep no state built from these events, and a reply in flight
    // is followed from storage, which loses nothing.
    stream_->ReadNext();
  }

  void OnWatchDone(const absl::Status& status) {
    stream_.reset();
    if (ready_) {
      ready_ = false;
      deps_.watches_ready.Decrement();
    }
    if (closed_) {
      return;
    }
    // Joins waiting for the watch do not wait out the outage: the room works here meanwhile.
    failed_ = true;
    RunWaiting();
    if (Permanent(status)) {
      common::LogWarning("conversation watch ended",
                         {{"conversation_id", Id()}, {"error", std::string(status.message())}});
      return;
    }
    if (attempts_ == 0) {
      common::LogWarning("conversation watch lost; watching again",
                         {{"conversation_id", Id()}, {"error", std::string(status.message())}});
    }
    deps_.watch_restarts.Increment();
    retry_.expires_after(absl::ToChronoNanoseconds(RetryDelay(attempts_++)));
    retry_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
      if (!error) {
        self->Watch();
      }
    });
  }

  void OnEvent(const persistence_pb::ConversationEvent& event) {
    switch (event.event_case()) {
      case persistence_pb::ConversationEvent::kSignal:
        return OnSignal(event);
      case persistence_pb::ConversationEvent::kMessageAdded:
        return OnMessageAdded(event.message_added());
      default:
        // A reply's end reaches viewers here from its follower, which reads it from storage.
        return;
    }
  }

  void OnSignal(const persistence_pb::ConversationEvent& event) {
    const persistence_pb::Signal& signal = event.signal();
    // This edge showed its own viewers already.
    if (absl::StartsWith(signal.origin(), deps_.origin_prefix)) {
      return;
    }
    if (signal.kind() == persistence_pb::SIGNAL_KIND_TYPING && event.has_event_time() &&
        absl::Now() - TimeOf(event.event_time()) > kShowMaxAge) {
      deps_.signals_expired.Increment();
      return;
    }
    deps_.signals_received.Increment();
    switch (signal.kind()) {
      case persistence_pb::SIGNAL_KIND_TYPING:
        return Show(TypingRelay{Id(), signal.payload() != "0"});
      case persistence_pb::SIGNAL_KIND_JOIN:
        return Show(MemberJoined{Id(), user_id_, signal.payload()});
      case persistence_pb::SIGNAL_KIND_LEAVE:
        return Show(MemberLeft{Id(), user_id_, signal.payload()});
      default:
        return;
    }
  }

  void OnMessageAdded(const persistence_pb::MessageAdded& added) {
    const persistence_pb::Message& message = added.message();
    // This edge's turns show their own messages to its viewers as they store them. Told by the
    // origin the message was stored with, not by its ids: its event may arrive before the turn
    // knows the stored id, and a client's message id is unique only within a conversation.
    if (!added.origin().empty() && added.origin() == deps_.rooms.origin()) {
      return;
    }
    if (message.role() == persistence_pb::ROLE_ASSISTANT &&
        message.status() == persistence_pb::MESSAGE_STATUS_STREAMING) {
      Show(StreamStart{conversation_id_, message.id(), message.model(),
                       ToHistoryMessage(message).created_at});
      return Follow(message.id());
    }
    if (!added.content_omitted()) {
      return Show(MessageAdded{conversation_id_, ToHistoryMessage(message)});
    }
    // Too large for a notification: read it.
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user_id_);
    request.set_message_id(message.id());
    deps_.persistence.GetMessage(
        std::move(request), common::NewTraceContext(),
        [self = shared_from_this()](absl::StatusOr<persistence_pb::GetMessageResponse> response) {
          if (!response.ok()) {
            return;
          }
          net::post(self->strand_, [self, message = std::move(*response->mutable_message())] {
            self->Show(MessageAdded{self->conversation_id_, ToHistoryMessage(message)});
          });
        });
  }

  void Follow(const std::string& message_id) {
    if (closed_) {
      return;
    }
    auto [it, added] = followers_.try_emplace(message_id);
    Follower& follower = it->second;
    if (added) {
      follower.retry = std::make_unique<net::steady_timer>(strand_);
    }
    persistence_pb::WatchMessageRequest request;
    request.set_user_id(user_id_);
    request.set_message_id(message_id);
    request.set_after_seq(follower.last_seq);
    follower.stream = deps_.persistence.Watch(
        std::move(request), kFollowDeadline, common::NewTraceContext(),
        WatchStream::Callbacks{
            .on_message =
                [self = shared_from_this(),
                 message_id](persistence_pb::WatchMessageResponse response) {
                  net::post(self->strand_, [self, message_id, response = std::move(response)] {
                    self->OnFollowed(message_id, response);
                  });
                },
            .on_done =
                [self = shared_from_this(), message_id](absl::Status status) {
                  net::post(self->strand_, [self, message_id, status = std::move(status)] {
                    self->OnFollowDone(message_id, status);
                  });
                },
        });
  }

  void OnFollowed(const std::string& message_id,
                  const persistence_pb::WatchMessageResponse& response) {
    auto it = followers_.find(message_id);
    if (closed_ || it == followers_.end()) {
      return;
    }
    Follower& follower = it->second;
    if (response.has_delta()) {
      const persistence_pb::WatchDelta& delta = response.delta();
      if (delta.seq() > follower.last_seq) {
        follower.last_seq = delta.seq();
        follower.text += delta.text();
        Show(StreamToken{message_id, delta.seq(), delta.text()});
      }
    } else if (response.has_finish() && !follower.finished) {
      follower.finished = true;
      Show(ReplyEnd(message_id, response.finish(), follower.last_seq, follower.text));
    }
    // Viewers that fall behind get merged tokens from their own queues; this never waits.
    if (follower.stream != nullptr) {
      follower.stream->ReadNext();
    }
  }

  void OnFollowDone(const std::string& message_id, const absl::Status& status) {
    auto it = followers_.find(message_id);
    if (it == followers_.end()) {
      return;
    }
    Follower& follower = it->second;
    follower.stream.reset();
    if (closed_ || follower.finished || Permanent(status) ||
        status.code() == absl::StatusCode::kDeadlineExceeded) {
      followers_.erase(it);
      return;
    }
    // The replica went away mid-reply: go on from the last seq shown, on another.
    follower.retry->expires_after(absl::ToChronoNanoseconds(RetryDelay(follower.attempts++)));
    follower.retry->async_wait(
        [self = shared_from_this(), message_id](const boost::system::error_code& error) {
          if (!error) {
            self->Follow(message_id);
          }
        });
  }

  PersistenceRoomLinks::Deps& deps_;
  net::strand<net::any_io_executor> strand_;
  const std::string user_id_;
  // The client's name of the conversation, when the link was opened for one.
  const std::string name_;
  // Everything below is used on the strand only.
  // Empty while the name is not known to be stored.
  std::string conversation_id_;
  std::weak_ptr<ConversationRoom> room_;
  std::shared_ptr<ConversationWatchStream> stream_;
  net::steady_timer retry_;
  int attempts_ = 0;
  bool ready_ = false;
  // The watch failed at least once: joins stop waiting for it.
  bool failed_ = false;
  bool closed_ = false;
  std::vector<std::function<void()>> waiting_;
  std::map<std::string, Follower> followers_;
};

}  // namespace

PersistenceRoomLinks::PersistenceRoomLinks(PersistenceClient& persistence,
                                           net::any_io_executor executor, ConversationRooms& rooms,
                                           prometheus::Registry& registry, std::string edge_id)
    : signals_(prometheus::BuildCounter()
                   .Name("parley_edge_room_signals_total")
                   .Help("Typing, join and leave signals published for other edges, received from "
                         "them, those that could not be published, and typing signals dropped "
                         "as too old to show (expired).")
                   .Register(registry)),
      deps_{
          .persistence = persistence,
          .executor = std::move(executor),
          .rooms = rooms,
          .origin_prefix = absl::StrCat(edge_id, "/"),
          .watches = prometheus::BuildGauge()
                         .Name("parley_edge_conversation_watches")
                         .Help("Conversations this edge follows in persistence (one per "
                               "conversation viewed here, however many connections view it).")
                         .Register(registry)
                         .Add({}),
          .watches_ready = prometheus::BuildGauge()
                               .Name("parley_edge_conversation_watches_ready")
                               .Help("Of those, the ones whose watch is in place right now.")
                               .Register(registry)
                               .Add({}),
          .watch_restarts = prometheus::BuildCounter()
                                .Name("parley_edge_conversation_watch_restarts_total")
                                .Help("Conversation watches opened again after their "
                                      "persistence replica went away.")
                                .Register(registry)
                                .Add({}),
          .signals_published = signals_.Add({{"direction", "published"}}),
          .signals_received = signals_.Add({{"direction", "received"}}),
          .signals_failed = signals_.Add({{"direction", "failed"}}),
          .signals_expired = signals_.Add({{"direction", "expired"}}),
      } {}

std::shared_ptr<RoomLink> PersistenceRoomLinks::Open(const std::string& user_id,
                                                     const std::string& conversation_id,
                                                     std::weak_ptr<ConversationRoom> room) {
  auto link =
      std::make_shared<PersistenceRoomLink>(deps_, user_id, conversation_id, std::move(room));
  link->Start();
  return link;
}

}  // namespace parley::edge
