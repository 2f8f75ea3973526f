#include "persistence/watch_hub.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace parley::persistence {
namespace {

class CountingWatcher : public MessageWatcher {
 public:
  void OnMessageChanged() override { ++changes; }
  int changes = 0;
};

// Stays inside OnMessageChanged, holding its shard's lock, until the test lets it go.
class BlockingWatcher : public MessageWatcher {
 public:
  void OnMessageChanged() override {
    entered.Notify();
    release.WaitForNotification();
  }
  absl::Notification entered;
  absl::Notification release;
};

class RecordingConversationWatcher : public ConversationWatcher {
 public:
  void OnConversationEvent(const v1::ConversationEvent& event) override { events.push_back(event); }
  void OnConversationGap() override { ++gaps; }
  std::vector<v1::ConversationEvent> events;
  int gaps = 0;
};

// An id whose watchers live in another shard than `other`'s.
std::string IdInAnotherShardThan(const std::string& other) {
  for (int i = 0;; ++i) {
    std::string id = "message-" + std::to_string(i);
    if (WatchHub::ShardIndexOf(id) != WatchHub::ShardIndexOf(other)) {
      return id;
    }
  }
}

TEST(WatchHubTest, ANotifyReachesTheWatchersOfItsMessageOnlyAndAnEmptyIdWakesAll) {
  WatchHub hub;
  CountingWatcher first, second, other;
  hub.Subscribe("m1", &first);
  hub.Subscribe("m1", &second);
  const std::string elsewhere = IdInAnotherShardThan("m1");
  hub.Subscribe(elsewhere, &other);

  hub.Notify("m1");
  EXPECT_EQ(first.changes, 1);
  EXPECT_EQ(second.changes, 1);
  EXPECT_EQ(other.changes, 0);

  hub.Notify("");
  EXPECT_EQ(first.changes, 2);
  EXPECT_EQ(second.changes, 2);
  EXPECT_EQ(other.changes, 1);

  hub.Unsubscribe("m1", &first);
  hub.Notify("m1");
  hub.Notify("");
  EXPECT_EQ(first.changes, 2);
  EXPECT_EQ(second.changes, 4);
}

// The property the shards exist for: one reply's commit does not wait for another's.
TEST(WatchHubTest, ANotifyInOneShardDoesNotWaitForAWatcherBusyInAnother) {
  WatchHub hub;
  BlockingWatcher busy;
  CountingWatcher free_watcher;
  hub.Subscribe("busy", &busy);
  const std::string free_id = IdInAnotherShardThan("busy");
  hub.Subscribe(free_id, &free_watcher);

  std::thread notifier([&] { hub.Notify("busy"); });
  busy.entered.WaitForNotification();
  // Would never return if both ids shared a lock: the busy watcher holds its shard's.
  hub.Notify(free_id);
  EXPECT_EQ(free_watcher.changes, 1);
  busy.release.Notify();
  notifier.join();
  hub.Unsubscribe("busy", &busy);
  hub.Unsubscribe(free_id, &free_watcher);
}

TEST(WatchHubTest, ManyIdsSpreadOverTheShards) {
  std::vector<bool> used(64, false);
  int distinct = 0;
  for (int i = 0; i < 1000; ++i) {
    const size_t shard = WatchHub::ShardIndexOf("message-" + std::to_string(i));
    ASSERT_LT(shard, used.size());
    if (!used[shard]) {
      used[shard] = true;
      ++distinct;
    }
  }
  EXPECT_GE(distinct, 16);
}

v1::ConversationEvent MessageAddedTo(const std::string& conversation_id) {
  v1::ConversationEvent event;
  event.set_conversation_id(conversation_id);
  event.mutable_message_added()->mutable_message()->set_id("m1");
  return event;
}

TEST(WatchHubTest, ConversationWatchersGetTheirConversationsEventsAndEveryGap) {
  WatchHub hub;
  RecordingConversationWatcher a, b;
  hub.SubscribeConversation("c1", &a);
  hub.SubscribeConversation("c2", &b);

  hub.Publish(MessageAddedTo("c1"));
  ASSERT_EQ(a.events.size(), 1u);
  EXPECT_EQ(a.events[0].conversation_id(), "c1");
  EXPECT_TRUE(b.events.empty());

  // Subscribing again moves the watcher.
  hub.SubscribeConversation("c2", &a);
  hub.Publish(MessageAddedTo("c1"));
  hub.Publish(MessageAddedTo("c2"));
  EXPECT_EQ(a.events.size(), 2u);
  EXPECT_EQ(b.events.size(), 1u);

  hub.PublishGap();
  EXPECT_EQ(a.gaps, 1);
  EXPECT_EQ(b.gaps, 1);

  hub.UnsubscribeConversation(&a);
  hub.Publish(MessageAddedTo("c2"));
  hub.PublishGap();
  EXPECT_EQ(a.events.size(), 2u);
  EXPECT_EQ(a.gaps, 1);
  EXPECT_EQ(b.events.size(), 2u);
}

TEST(WatchHubTest, AWatcherOfAClientNameGetsItsSignalsThenFollowsTheConversationItCreates) {
  WatchHub hub;
  RecordingConversationWatcher waiting, other_user;
  hub.SubscribeClientName("alice", "notes", &waiting);
  hub.SubscribeClientName("bob", "notes", &other_user);

  v1::ConversationEvent signal;
  signal.set_user_id("alice");
  signal.set_client_conversation_id("notes");
  signal.mutable_signal();
  hub.Publish(signal);
  ASSERT_EQ(waiting.events.size(), 1u);
  EXPECT_TRUE(waiting.events[0].has_signal());
  EXPECT_TRUE(other_user.events.empty());

  v1::ConversationEvent created = MessageAddedTo("c9");
  created.mutable_message_added()->set_created_for_user_id("alice");
  created.mutable_message_added()->set_created_client_conversation_id("notes");
  hub.Publish(created);
  ASSERT_EQ(waiting.events.size(), 2u);
  EXPECT_EQ(waiting.events[1].conversation_id(), "c9");
  EXPECT_TRUE(other_user.events.empty());

  // From here on it is a watcher of c9, and the name no longer reaches it.
  hub.Publish(MessageAddedTo("c9"));
  hub.Publish(signal);
  EXPECT_EQ(waiting.events.size(), 3u);
  EXPECT_EQ(waiting.events[2].conversation_id(), "c9");
}

}  // namespace
}  // namespace parley::persistence
