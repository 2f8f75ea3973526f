#include "persistence/watch_hub.h"

namespace parley::persistence {

void WatchHub::Subscribe(const std::string& message_id, MessageWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_[message_id].insert(watcher);
}

void WatchHub::Unsubscribe(const std::string& message_id, MessageWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(message_id);
  if (it == watchers_.end()) {
    return;
  }
  it->second.erase(watcher);
  if (it->second.empty()) {
    watchers_.erase(it);
  }
}

void WatchHub::Notify(const std::string& message_id) {
  absl::MutexLock lock(&mu_);
  if (message_id.empty()) {
    for (auto& [id, watchers] : watchers_) {
      for (MessageWatcher* watcher : watchers) {
        watcher->OnMessageChanged();
      }
    }
    return;
  }
  auto it = watchers_.find(message_id);
  if (it == watchers_.end()) {
    return;
  }
  for (MessageWatcher* watcher : it->second) {
    watcher->OnMessageChanged();
  }
}

void WatchHub::SubscribeConversation(const std::string& conversation_id,
                                     ConversationWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  conversation_watchers_[conversation_id].insert(watcher);
}

void WatchHub::UnsubscribeConversation(const std::string& conversation_id,
                                       ConversationWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  auto it = conversation_watchers_.find(conversation_id);
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
  auto it = conversation_watchers_.find(event.conversation_id());
  if (it == conversation_watchers_.end()) {
    return;
  }
  for (ConversationWatcher* watcher : it->second) {
    watcher->OnConversationEvent(event);
  }
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
