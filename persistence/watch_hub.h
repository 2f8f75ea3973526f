#pragma once

#include <array>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "parley/persistence/v1/conversation_service.pb.h"

namespace parley::persistence {

// Something following a message: told when the message may have changed.
class MessageWatcher {
 public:
  virtual ~MessageWatcher() = default;
  // Runs with a lock of the hub held: must not block or call back into the hub.
  virtual void OnMessageChanged() = 0;
};

// Something following a conversation.
class ConversationWatcher {
 public:
  virtual ~ConversationWatcher() = default;
  // Both run with the hub's lock held: must not block or call back into the hub.
  virtual void OnConversationEvent(const ::parley::persistence::v1::ConversationEvent& event) = 0;
  // Events may have been lost.
  virtual void OnConversationGap() = 0;
};

// In-process fan-out of "message X changed" (from local commits and, with
// PostgreSQL, from other replicas) to the watchers of X. Every commit of a streaming reply
// notifies, so message watchers are kept in shards by message id, each with its own lock: one
// reply's commit does not wait for another's.
class WatchHub {
 public:
  WatchHub() = default;
  // Takes the locks once: the last Unsubscribe may come from a reactor's OnDone on a gRPC thread,
  // and gRPC orders that before the server's shutdown returns only through its own atomics,
  // which ThreadSanitizer cannot see in Debian's (uninstrumented) gRPC. The lock makes the order
  // the hub relies on its own.
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  void Subscribe(const std::string& message_id, MessageWatcher* watcher);
  // After this returns the watcher is never called again.
  void Unsubscribe(const std::string& message_id, MessageWatcher* watcher);
  // An empty id wakes every watcher.
  void Notify(const std::string& message_id);

  // A watcher follows one conversation at a time: subscribing again moves it.
  void SubscribeConversation(const std::string& conversation_id, ConversationWatcher* watcher);
  // The user's conversation of a client name, not stored yet: it gets the signals sent to the
  // name, and the event of the message that creates the conversation (on any replica) moves the
  // watcher to that conversation.
  void SubscribeClientName(const std::string& user_id, const std::string& name,
                           ConversationWatcher* watcher);
  // Wherever it is subscribed. After this returns the watcher is never called again.
  void UnsubscribeConversation(ConversationWatcher* watcher);
  void Publish(const ::parley::persistence::v1::ConversationEvent& event);
  // Tells every conversation watcher that events may have been lost.
  void PublishGap();

  // Which of the message shards holds `message_id`'s watchers: two ids in different shards never
  // wait for each other.
  static size_t ShardIndexOf(const std::string& message_id);

 private:
  struct MessageShard {
    absl::Mutex mu;
    std::unordered_map<std::string, std::unordered_set<MessageWatcher*>> watchers
        ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kMessageShards = 32;
  MessageShard& ShardOf(const std::string& message_id);

  std::array<MessageShard, kMessageShards> message_shards_;

  absl::Mutex mu_;
  // Keyed by conversation id, or by NameKey() for watchers of a client name.
  std::unordered_map<std::string, std::unordered_set<ConversationWatcher*>> conversation_watchers_
      ABSL_GUARDED_BY(mu_);
  // Each watcher's key in conversation_watchers_.
  std::unordered_map<ConversationWatcher*, std::string> watched_ ABSL_GUARDED_BY(mu_);

  void UnsubscribeLocked(ConversationWatcher* watcher) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static std::string NameKey(const std::string& user_id, const std::string& name);
};

}  // namespace parley::persistence
