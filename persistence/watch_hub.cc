#include "persistence/watch_hub.h"

#include <functional>

#include "absl/strings/str_cat.h"

namespace parley::persistence {

WatchHub::~WatchHub() {
  for (MessageShard& shard : message_shards_) {
    absl::MutexLock lock(&shard.mu);
    shard.watchers.clear();
  }
  absl::MutexLock lock(&mu_);
  conversation_watchers_.clear();
}

size_t WatchHub::ShardIndexOf(const std::string& message_id) {
  return std::hash<std::string>{}(message_id) % kMessageShards;
}

WatchHub::MessageShard& WatchHub::ShardOf(const std::string& message_id) {
  return message_shards_[ShardIndexOf(message_id)];
}

void WatchHub::Subscribe(const std::string& message_id, MessageWatcher* watcher) {
  MessageShard& shard = ShardOf(message_id);
  absl::MutexLock lock(&shard.mu);
  shard.watchers[message_id].insert(watcher);
}

void WatchHub::Unsubscribe(const std::string& message_id, MessageWatcher* watcher) {
  MessageShard& shard = ShardOf(message_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.watchers.find(message_id);
  if (it == shard.watchers.end()) {
    return;
  }
  it->second.erase(watcher);
  if (it->second.empty()) {
    shard.watchers.erase(it);
  }
}

void WatchHub::Notify(const std::string& message_id) {
  if (message_id.empty()) {
    for (MessageShard& shard : message_shards_) {
      absl::MutexLock lock(&shard.mu);
      for (auto& [id, watchers] : shard.watchers) {
        for (MessageWatcher* watcher : watchers) {
          watcher->OnMessageChanged();
        }
      }
    }
    return;
  }
  MessageShard& shard = ShardOf(message_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.watchers.find(message_id);
  if (it == shard.watchers.end()) {
    return;
  }
  for (MessageWatcher* watcher : it->second) {
    watcher->OnMessageChanged();
  }
}

void WatchHub::SubscribeConversation(const std::string& conversation_id,
                                     ConversationWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  UnsubscribeLocked(watcher);
  conversation_watchers_[conversation_id].insert(watcher);
  watched_[watcher] = conversation_id;
}

void WatchHub::SubscribeClientName(const std::string& user_id, const std::string& name,
                                   ConversationWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  UnsubscribeLocked(watcher);
  std::string key = NameKey(user_id, name);
  conversation_watchers_[key].insert(watcher);
  watched_[watcher] = std::move(key);
}

void WatchHub::UnsubscribeConversation(ConversationWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  UnsubscribeLocked(watcher);
}

void WatchHub::UnsubscribeLocked(ConversationWatcher* watcher) {
  auto watched = watched_.find(watcher);
  if (watched == watched_.end()) {
    return;
  }
  auto it = conversation_watchers_.find(watched->second);
  watched_.erase(watched);
  if (it == conversation_watchers_.end()) {
    return;
  }
  it->second.erase(watcher);
  if (it->second.empty()) {
    conversation_watchers_.erase(it);
  }
}

void WatchHub::Publish(const ::parley::persistence::v1::ConversationEvent& event) {
  absl::MutexLock lock(&mu_);
  if (event.has_message_added() &&
      !event.message_added().created_client_conversation_id().empty()) {
    // The conversation its watchers by name were waiting for: they follow it from here on.
    auto waiting = conversation_watchers_.find(
        NameKey(event.message_added().created_for_user_id(),
                event.message_added().created_client_conversation_id()));
    if (waiting != conversation_watchers_.end()) {
      std::unordered_set<ConversationWatcher*> moving = std::move(waiting->second);
      conversation_watchers_.erase(waiting);
      std::unordered_set<ConversationWatcher*>& into =
          conversation_watchers_[event.conversation_id()];
      for (ConversationWatcher* watcher : moving) {
        into.insert(watcher);
        watched_[watcher] = event.conversation_id();
      }
    }
  }
  // A signal in a conversation not stored yet reaches the watchers of its name.
  auto it = conversation_watchers_.find(
      event.conversation_id().empty() ? NameKey(event.user_id(), event.client_conversation_id())
                                      : event.conversation_id());
  if (it == conversation_watchers_.end()) {
    return;
  }
  for (ConversationWatcher* watcher : it->second) {
    watcher->OnConversationEvent(event);
  }
}

std::string WatchHub::NameKey(const std::string& user_id, const std::string& name) {
  // Neither a user id nor a name holds a control character, and no conversation id starts with
  // one: the key cannot meet a conversation id or another user's name.
  return absl::StrCat("\x01", user_id, "\n", name);
}

void WatchHub::PublishGap() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, watchers] : conversation_watchers_) {
    for (ConversationWatcher* watcher : watchers) {
      watcher->OnConversationGap();
    }
  }
}

}  // namespace parley::persistence
