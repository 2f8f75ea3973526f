#include "edge/turn/conversation_rooms.h"

#include <utility>
#include <vector>

#include "edge/turn/conversation_names.h"

namespace parley::edge {

const std::string& ConversationRooms::Resolve(const std::string& user_id,
                                              const std::string& room) const {
  auto moved = stored_as_.find({user_id, room});
  return moved == stored_as_.end() ? room : moved->second;
}

void ConversationRooms::Join(const std::string& user_id, const std::string& room,
                             uint64_t connection, Deliver deliver, std::string name) {
  absl::MutexLock lock(&mutex_);
  const std::string resolved = Resolve(user_id, room);
  if (name.empty() && resolved != room) {
    name = room;
  }
  auto [member, added] = rooms_[{user_id, resolved}].insert_or_assign(
      connection, Member{std::move(deliver), std::move(name)});
  if (added) {
    members_.fetch_add(1);
  }
}

void ConversationRooms::Leave(const std::string& user_id, const std::string& room,
                              uint64_t connection) {
  absl::MutexLock lock(&mutex_);
  const std::string resolved = Resolve(user_id, room);
  auto found = rooms_.find({user_id, resolved});
  if (found == rooms_.end()) {
    return;
  }
  if (found->second.erase(connection) > 0) {
    members_.fetch_sub(1);
  }
  if (found->second.empty()) {
    rooms_.erase(found);
    // Nobody is left who joined by a name of it: later joins find the stored id themselves.
    std::erase_if(stored_as_, [&](const auto& entry) {
      return entry.first.first == user_id && entry.second == resolved;
    });
  }
}

void ConversationRooms::Named(const std::string& user_id, const std::string& name,
                              const std::string& conversation_id) {
  absl::MutexLock lock(&mutex_);
  auto waiting = rooms_.find({user_id, name});
  if (waiting == rooms_.end()) {
    return;
  }
  std::map<uint64_t, Member>& room = rooms_[{user_id, conversation_id}];
  for (auto& [connection, member] : waiting->second) {
    if (member.name.empty()) {
      member.name = name;
    }
    if (!room.insert_or_assign(connection, std::move(member)).second) {
      members_.fetch_sub(1);  // It was in both rooms: it counts once.
    }
  }
  rooms_.erase(waiting);
  stored_as_[{user_id, name}] = conversation_id;
}

int ConversationRooms::Relay(const std::string& user_id, const std::string& room, uint64_t from,
                             const Event& event) {
  // Delivered outside the lock: a delivery may post to a strand that is joining or leaving.
  if (members_.load(std::memory_order_relaxed) == 0) {
    return 0;
  }
  std::vector<std::pair<Deliver, std::string>> targets;
  std::string resolved;
  {
    absl::MutexLock lock(&mutex_);
    resolved = Resolve(user_id, room);
    auto found = rooms_.find({user_id, resolved});
    if (found == rooms_.end()) {
      return 0;
    }
    for (const auto& [connection, member] : found->second) {
      if (connection != from) {
        targets.emplace_back(member.deliver, member.name.empty() ? resolved : member.name);
      }
    }
  }
  for (const auto& [deliver, name] : targets) {
    if (name == room) {
      deliver(event);
    } else {
      Event renamed = event;
      RenameConversation(renamed, name);
      deliver(std::move(renamed));
    }
  }
  return static_cast<int>(targets.size());
}

int ConversationRooms::Members(const std::string& user_id, const std::string& room) const {
  absl::MutexLock lock(&mutex_);
  auto found = rooms_.find({user_id, Resolve(user_id, room)});
  return found == rooms_.end() ? 0 : static_cast<int>(found->second.size());
}

}  // namespace parley::edge
