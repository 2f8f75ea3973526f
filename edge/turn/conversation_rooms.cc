#include "edge/turn/conversation_rooms.h"

#include <vector>

namespace parley::edge {

void ConversationRooms::Join(const std::string& user_id, const std::string& conversation_id,
                             uint64_t connection, Deliver deliver) {
  absl::MutexLock lock(&mutex_);
  auto [member, added] =
      rooms_[{user_id, conversation_id}].insert_or_assign(connection, std::move(deliver));
  if (added) {
    members_.fetch_add(1);
  }
}

void ConversationRooms::Leave(const std::string& user_id, const std::string& conversation_id,
                              uint64_t connection) {
  absl::MutexLock lock(&mutex_);
  auto room = rooms_.find({user_id, conversation_id});
  if (room == rooms_.end()) {
    return;
  }
  if (room->second.erase(connection) > 0) {
    members_.fetch_sub(1);
  }
  if (room->second.empty()) {
    rooms_.erase(room);
  }
}

int ConversationRooms::Relay(const std::string& user_id, const std::string& conversation_id,
                             uint64_t from, const Event& event) {
  // Delivered outside the lock: a delivery may post to a strand that is joining or leaving.
  if (members_.load(std::memory_order_relaxed) == 0) {
    return 0;
  }
  std::vector<Deliver> targets;
  {
    absl::MutexLock lock(&mutex_);
    auto room = rooms_.find({user_id, conversation_id});
    if (room == rooms_.end()) {
      return 0;
    }
    for (const auto& [connection, deliver] : room->second) {
      if (connection != from) {
        targets.push_back(deliver);
      }
    }
  }
  for (const Deliver& deliver : targets) {
    deliver(event);
  }
  return static_cast<int>(targets.size());
}

int ConversationRooms::Members(const std::string& user_id,
                               const std::string& conversation_id) const {
  absl::MutexLock lock(&mutex_);
  auto room = rooms_.find({user_id, conversation_id});
  return room == rooms_.end() ? 0 : static_cast<int>(room->second.size());
}

}  // namespace parley::edge
