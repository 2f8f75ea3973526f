#include "edge/turn/conversation_rooms.h"

#include <utility>
#include <vector>

#include "edge/turn/conversation_names.h"

namespace parley::edge {

int ConversationRoom::Relay(uint64_t from, const Event& event, const std::string& naming) {
  if (size_.load(std::memory_order_relaxed) == 0) {
    return 0;
  }
  // Delivered outside the lock: a delivery may post to a strand that is joining or leaving.
  std::vector<std::pair<DeliverEvent, std::string>> targets;
  {
    absl::MutexLock lock(&mutex_);
    targets.reserve(members_.size());
    for (const auto& [connection, member] : members_) {
      if (connection != from) {
        targets.emplace_back(member.deliver, member.name.empty() ? id_ : member.name);
      }
    }
  }
  for (const auto& [deliver, name] : targets) {
    if (name == naming) {
      deliver(event);
    } else {
      Event renamed = event;
      RenameConversation(renamed, name);
      deliver(std::move(renamed));
    }
  }
  return static_cast<int>(targets.size());
}

const std::string& ConversationRooms::Resolve(const std::string& user_id,
                                              const std::string& room) const {
  auto moved = stored_as_.find({user_id, room});
  return moved == stored_as_.end() ? room : moved->second;
}

std::shared_ptr<ConversationRoom> ConversationRooms::RoomOf(const RoomKey& key, bool link) {
  auto found = rooms_.find(key);
  if (found != rooms_.end()) {
    return found->second;
  }
  auto room = std::make_shared<ConversationRoom>(key.second);
  rooms_.emplace(key, room);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  // A name not stored yet is followed by its name: whichever edge stores it, its first message
  // reaches this room, which then becomes the stored conversation's (Stored).
  if (link && links_ != nullptr) {
    links_by_room_[key] = links_->Open(key.first, key.second, room);
  }
  return room;
}

std::shared_ptr<RoomLink> ConversationRooms::Retire(
    std::map<RoomKey, std::shared_ptr<ConversationRoom>>::iterator it) {
  it->second->retired_.store(true, std::memory_order_release);
  std::shared_ptr<RoomLink> link;
  if (auto linked = links_by_room_.find(it->first); linked != links_by_room_.end()) {
    link = std::move(linked->second);
    links_by_room_.erase(linked);
  }
  rooms_.erase(it);
  return link;
}

std::shared_ptr<ConversationRoom> ConversationRooms::Lookup(const std::string& user_id,
                                                            const std::string& room,
                                                            std::string* resolved) const {
  absl::MutexLock lock(&mutex_);
  *resolved = Resolve(user_id, room);
  auto found = rooms_.find({user_id, *resolved});
  return found == rooms_.end() ? nullptr : found->second;
}

void ConversationRooms::Join(const std::string& user_id, const std::string& room,
                             uint64_t connection, Deliver deliver, std::string name,
                             std::function<void()> ready) {
  std::shared_ptr<RoomLink> link;
  {
    absl::MutexLock lock(&mutex_);
    const std::string resolved = Resolve(user_id, room);
    if (name.empty() && resolved != room) {
      name = room;
    }
    const RoomKey key{user_id, resolved};
    std::shared_ptr<ConversationRoom> target = RoomOf(key);
    {
      absl::MutexLock room_lock(&target->mutex_);
      auto [member, added] = target->members_.insert_or_assign(
          connection, ConversationRoom::Member{std::move(deliver), std::move(name)});
      if (added) {
        target->size_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (auto linked = links_by_room_.find(key); linked != links_by_room_.end()) {
      link = linked->second;
    }
  }
  if (ready == nullptr) {
    return;
  }
  if (link != nullptr) {
    link->WhenReady(std::move(ready));
  } else {
    ready();
  }
}

void ConversationRooms::Leave(const std::string& user_id, const std::string& room,
                              uint64_t connection) {
  std::shared_ptr<RoomLink> closing;
  {
    absl::MutexLock lock(&mutex_);
    const std::string resolved = Resolve(user_id, room);
    auto found = rooms_.find({user_id, resolved});
    if (found == rooms_.end()) {
      return;
    }
    bool empty = false;
    {
      ConversationRoom& target = *found->second;
      absl::MutexLock room_lock(&target.mutex_);
      if (target.members_.erase(connection) > 0) {
        target.size_.fetch_sub(1, std::memory_order_relaxed);
      }
      empty = target.members_.empty();
    }
    if (empty) {
      closing = Retire(found);
      // Nobody is left who joined by a name of it: later joins find the stored id themselves.
      std::erase_if(stored_as_, [&](const auto& entry) {
        return entry.first.first == user_id && entry.second == resolved;
      });
    }
  }
  if (closing != nullptr) {
    closing->Close();
  }
}

void ConversationRooms::Named(const std::string& user_id, const std::string& name,
                              const std::string& conversation_id) {
  std::shared_ptr<RoomLink> closing;
  {
    absl::MutexLock lock(&mutex_);
    MoveNamed(user_id, name, conversation_id, &closing);
  }
  if (closing != nullptr) {
    closing->Close();
  }
}

std::shared_ptr<ConversationRoom> ConversationRooms::Stored(const std::string& user_id,
                                                            const std::string& name,
                                                            const std::string& conversation_id,
                                                            const RoomLink* link) {
  std::shared_ptr<RoomLink> closing;
  std::shared_ptr<ConversationRoom> room;
  {
    absl::MutexLock lock(&mutex_);
    MoveNamed(user_id, name, conversation_id, &closing);
    const RoomKey key{user_id, conversation_id};
    auto linked = links_by_room_.find(key);
    if (linked != links_by_room_.end() && linked->second.get() == link) {
      room = rooms_.at(key);
    }
  }
  // Not `link` itself: the caller closes itself when it gets no room.
  if (closing != nullptr && closing.get() != link) {
    closing->Close();
  }
  return room;
}

void ConversationRooms::MoveNamed(const std::string& user_id, const std::string& name,
                                  const std::string& conversation_id,
                                  std::shared_ptr<RoomLink>* closing) {
  auto waiting = rooms_.find({user_id, name});
  if (waiting == rooms_.end()) {
    return;
  }
  const RoomKey stored{user_id, conversation_id};
  // The name's link follows the stored conversation now (its watch moved with the name): it
  // becomes the stored room's, unless that room has its own already.
  std::shared_ptr<RoomLink> name_link;
  if (auto linked = links_by_room_.find(waiting->first); linked != links_by_room_.end()) {
    name_link = std::move(linked->second);
    links_by_room_.erase(linked);
  }
  std::shared_ptr<ConversationRoom> from = waiting->second;
  std::shared_ptr<ConversationRoom> into = RoomOf(stored, /*link=*/name_link == nullptr);
  if (name_link != nullptr) {
    if (links_by_room_.contains(stored)) {
      *closing = std::move(name_link);
    } else {
      links_by_room_[stored] = std::move(name_link);
    }
  }
  {
    // The only place that holds two rooms' locks; `from` is retired right after, so no other
    // order of the two can ever be taken.
    absl::MutexLock from_lock(&from->mutex_);
    absl::MutexLock into_lock(&into->mutex_);
    for (auto& [connection, member] : from->members_) {
      if (member.name.empty()) {
        member.name = name;
      }
      if (into->members_.insert_or_assign(connection, std::move(member)).second) {
        into->size_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    from->members_.clear();
    from->size_.store(0, std::memory_order_relaxed);
  }
  // Its link was taken above.
  Retire(waiting);
  stored_as_[{user_id, name}] = conversation_id;
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

int ConversationRooms::Relay(const std::string& user_id, const std::string& room, uint64_t from,
                             const Event& event) {
  std::string resolved;
  std::shared_ptr<ConversationRoom> target = Lookup(user_id, room, &resolved);
  return target == nullptr ? 0 : target->Relay(from, event, room);
}

int ConversationRooms::Share(const std::string& user_id, const std::string& room, uint64_t from,
                             const Event& event) {
  const int relayed = Relay(user_id, room, from, event);
  std::shared_ptr<RoomLink> link;
  {
    absl::MutexLock lock(&mutex_);
    if (auto linked = links_by_room_.find({user_id, Resolve(user_id, room)});
        linked != links_by_room_.end()) {
      link = linked->second;
    }
  }
  if (link != nullptr) {
    link->Publish(from, event);
  }
  return relayed;
}

std::shared_ptr<ConversationRoom> ConversationRooms::Find(
    const std::string& user_id, const std::string& conversation_id) const {
  std::string resolved;
  return Lookup(user_id, conversation_id, &resolved);
}

void ConversationRooms::CloseAll() {
  std::map<RoomKey, std::shared_ptr<RoomLink>> links;
  {
    absl::MutexLock lock(&mutex_);
    links.swap(links_by_room_);
  }
  for (auto& [key, link] : links) {
    link->Close();
  }
}

int ConversationRooms::Members(const std::string& user_id, const std::string& room) const {
  std::string resolved;
  std::shared_ptr<ConversationRoom> target = Lookup(user_id, room, &resolved);
  if (target == nullptr) {
    return 0;
  }
  absl::MutexLock lock(&target->mutex_);
  return static_cast<int>(target->members_.size());
}

}  // namespace parley::edge
