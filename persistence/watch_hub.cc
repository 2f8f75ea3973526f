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

}  // namespace parley::persistence
