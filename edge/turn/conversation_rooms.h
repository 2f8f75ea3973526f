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

  // `connection` is a key unique to one connection. Joining twice is harmless.
  void Join(const std::string& user_id, const std::string& conversation_id, uint64_t connection,
            Deliver deliver);
  void Leave(const std::string& user_id, const std::string& conversation_id, uint64_t connection);

  // Hands `event` to every connection in the room except `from`; returns how many got it.
  int Relay(const std::string& user_id, const std::string& conversation_id, uint64_t from,
            const Event& event);

  // Connections in the room (for tests and metrics).
  int Members(const std::string& user_id, const std::string& conversation_id) const;

 private:
  using RoomKey = std::pair<std::string, std::string>;  // (user id, conversation id)

  // Connections in any room: lets the per-token relay skip the lock while nobody views.
  std::atomic<int> members_{0};
  mutable absl::Mutex mutex_;
  std::map<RoomKey, std::map<uint64_t, Deliver>> rooms_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace parley::edge
