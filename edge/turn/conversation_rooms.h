#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "edge/protocol/messages.h"

namespace parley::edge {

// Which of a user's connections view which conversation, so what one of them does there (typing,
// a new message and its streaming reply) reaches the others. Rooms are per user: a conversation
// belongs to one user, and a connection may only join conversations persistence says are its
// user's. They live in this process only: connections of one user on two edge instances do not see
// each other.
class ConversationRooms {
 public:
  // Safe to call from any thread; delivers `event` to one connection.
  using Deliver = std::function<void(Event event)>;

  // `connection` is a key unique to one connection. Joining twice is harmless. `room` is the
  // stored conversation's id, or a client's name of a conversation not stored yet; `name` is
  // what this connection calls the conversation when it is not `room` (a client name): the
  // events it is handed name the conversation that way.
  void Join(const std::string& user_id, const std::string& room, uint64_t connection,
            Deliver deliver, std::string name = "");
  void Leave(const std::string& user_id, const std::string& room, uint64_t connection);

  // The conversation the user's clients call `name` is stored as `conversation_id` now (its
  // first message was): connections that joined it by that name before move into its room.
  void Named(const std::string& user_id, const std::string& name,
             const std::string& conversation_id);

  // Hands `event` to every connection in the room except `from`; returns how many got it.
  int Relay(const std::string& user_id, const std::string& room, uint64_t from, const Event& event);

  // Connections in the room (for tests and metrics).
  int Members(const std::string& user_id, const std::string& room) const;

 private:
  using RoomKey = std::pair<std::string, std::string>;  // (user id, conversation id or name)
  struct Member {
    Deliver deliver;
    std::string name;  // Empty: the room's id.
  };

  // The room `room` is in now: a name's room moves into the conversation's once it is stored.
  const std::string& Resolve(const std::string& user_id, const std::string& room) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);

  // Connections in any room: lets the per-token relay skip the lock while nobody views.
  std::atomic<int> members_{0};
  mutable absl::Mutex mutex_;
  std::map<RoomKey, std::map<uint64_t, Member>> rooms_ ABSL_GUARDED_BY(mutex_);
  // Client names whose room moved into a stored conversation's, while that room has members.
  std::map<RoomKey, std::string> stored_as_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::edge
