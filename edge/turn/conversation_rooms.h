#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "edge/protocol/messages.h"

namespace parley::edge {

// Safe to call from any thread; delivers an event to one connection.
using DeliverEvent = std::function<void(Event event)>;

// The connections of one user viewing one conversation on this edge. A turn streaming into the
// conversation holds its room and relays every token through it, so a token takes this room's
// lock only, never one shared by every conversation of the process.
class ConversationRoom {
 public:
  explicit ConversationRoom(std::string id) : id_(std::move(id)) {}

  // Hands `event`, which calls the conversation `naming`, to every member except `from` (0:
  // every member, for an event from another edge), each under the name it uses for the
  // conversation; returns how many got it.
  int Relay(uint64_t from, const Event& event, const std::string& naming);

  // The last member left: the room is gone from ConversationRooms and nobody joins it again.
  bool retired() const { return retired_.load(std::memory_order_acquire); }
  const std::string& id() const { return id_; }

 private:
  friend class ConversationRooms;
  struct Member {
    DeliverEvent deliver;
    std::string name;  // Empty: the room's id.
  };

  const std::string id_;  // A stored conversation's id, or a client's name not stored yet.
  std::atomic<bool> retired_{false};
  // Members right now: lets a relay skip the lock while nobody views.
  std::atomic<int> size_{0};
  absl::Mutex mutex_;
  std::map<uint64_t, Member> members_ ABSL_GUARDED_BY(mutex_);
};

// What carries one stored conversation's room to and from the conversation's viewers on the
// other edges: opened when its first member joins here, closed when the last one leaves.
class RoomLink {
 public:
  virtual ~RoomLink() = default;
  // Runs `ready` once events from other edges reach the room (or following them failed for now:
  // a join does not wait out an outage of persistence). Any thread.
  virtual void WhenReady(std::function<void()> ready) = 0;
  // Tells the viewers on other edges of a typing, join or leave of connection `from` here.
  virtual void Publish(uint64_t from, const Event& event) = 0;
  // Stops following; nothing reaches the room from this link afterwards.
  virtual void Close() = 0;
};

// Opens the links of rooms (the edge's follow persistence's WatchConversation).
class RoomLinks {
 public:
  virtual ~RoomLinks() = default;
  virtual std::shared_ptr<RoomLink> Open(const std::string& user_id,
                                         const std::string& conversation_id,
                                         std::weak_ptr<ConversationRoom> room) = 0;
};

// Which of a user's connections view which conversation, so what one of them does there (typing,
// a new message and its streaming reply) reaches the others. Rooms are per user: a conversation
// belongs to one user, and a connection may only join conversations persistence says are its
// user's. With links (SetLinks), a stored conversation's room also reaches its viewers on every
// other edge; without, it lives in this process only.
class ConversationRooms {
 public:
  using Deliver = DeliverEvent;

  ConversationRooms() = default;
  ConversationRooms(const ConversationRooms&) = delete;
  ConversationRooms& operator=(const ConversationRooms&) = delete;

  // Before the first Join; `links` outlives every room. `origin` names this edge among all
  // those sharing persistence: the messages its turns store carry it (AppendMessage's `origin`),
  // so the links do not show their stored events here a second time.
  void SetLinks(RoomLinks* links, std::string origin = "") {
    links_ = links;
    origin_ = std::move(origin);
  }
  // Empty without links.
  const std::string& origin() const { return origin_; }

  // `connection` is a key unique to one connection (never 0). Joining twice is harmless. `room`
  // is the stored conversation's id, or a client's name of a conversation not stored yet (its
  // room is followed by that name on every edge, so it meets the stored room wherever the
  // first message is stored); `name`
  // is what this connection calls the conversation when it is not `room` (a client name): the
  // events it is handed name the conversation that way. `ready`, when set, runs (on any thread)
  // once the room also hears the conversation's other edges.
  void Join(const std::string& user_id, const std::string& room, uint64_t connection,
            Deliver deliver, std::string name = "", std::function<void()> ready = nullptr);
  void Leave(const std::string& user_id, const std::string& room, uint64_t connection);

  // The conversation the user's clients call `name` is stored as `conversation_id` now (its
  // first message was): connections that joined it by that name before move into its room.
  void Named(const std::string& user_id, const std::string& name,
             const std::string& conversation_id);
  // For the link of a name's room, which learnt that the name is stored as `conversation_id`
  // (by any edge): Named, then the room `link` feeds from now on, or null when the stored
  // conversation's room has a link of its own (`link` is then not needed: it closes itself).
  std::shared_ptr<ConversationRoom> Stored(const std::string& user_id, const std::string& name,
                                           const std::string& conversation_id,
                                           const RoomLink* link);

  // Hands `event` to every connection in the room except `from`; returns how many got it.
  int Relay(const std::string& user_id, const std::string& room, uint64_t from, const Event& event);
  // Relay, and tells the conversation's viewers on other edges too: for the signals a client
  // sends (typing, join, leave), which nothing stores.
  int Share(const std::string& user_id, const std::string& room, uint64_t from, const Event& event);

  // The room of a stored conversation, null while nobody here views it. Changes when rooms are
  // made: a holder whose answer was null need not ask again while `generation()` stays the same.
  std::shared_ptr<ConversationRoom> Find(const std::string& user_id,
                                         const std::string& conversation_id) const;
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Closes every link (the server is stopping).
  void CloseAll();

  // Connections in the room (for tests and metrics).
  int Members(const std::string& user_id, const std::string& room) const;

 private:
  using RoomKey = std::pair<std::string, std::string>;  // (user id, conversation id or name)

  // The room `room` is in now: a name's room moves into the conversation's once it is stored.
  const std::string& Resolve(const std::string& user_id, const std::string& room) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  // The room of `key`, made (and, with `link`, linked) if there is none.
  std::shared_ptr<ConversationRoom> RoomOf(const RoomKey& key, bool link = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Moves the room of `name`, if any, into the conversation's; a link left over goes to
  // `closing`, to close outside the lock.
  void MoveNamed(const std::string& user_id, const std::string& name,
                 const std::string& conversation_id, std::shared_ptr<RoomLink>* closing)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  std::shared_ptr<ConversationRoom> Lookup(const std::string& user_id, const std::string& room,
                                           std::string* resolved) const;
  // Removes an empty room; returns its link, to close outside the lock.
  std::shared_ptr<RoomLink> Retire(
      std::map<RoomKey, std::shared_ptr<ConversationRoom>>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  RoomLinks* links_ = nullptr;
  std::string origin_;
  std::atomic<uint64_t> generation_{0};
  mutable absl::Mutex mutex_;
  std::map<RoomKey, std::shared_ptr<ConversationRoom>> rooms_ ABSL_GUARDED_BY(mutex_);
  std::map<RoomKey, std::shared_ptr<RoomLink>> links_by_room_ ABSL_GUARDED_BY(mutex_);
  // Client names whose room moved into a stored conversation's, while that room has members.
  std::map<RoomKey, std::string> stored_as_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::edge
