// Rooms of conversations a client names: a name's room before the conversation is stored, its
// move into the stored conversation's room, and every member hearing the conversation by its own
// id for it.
#include "edge/turn/conversation_rooms.h"

#include <string>
#include <variant>
#include <vector>

#include "edge/turn/conversation_names.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

constexpr char kStored[] = "0123456789abcdef0123456789abcdef";

// What one connection was handed: the conversation id of each event.
struct Seen {
  ConversationRooms::Deliver deliver() {
    return [this](Event event) {
      const TypingRelay* typing = std::get_if<TypingRelay>(&event);
      ids.push_back(typing != nullptr ? typing->conversation_id : "?");
    };
  }
  std::vector<std::string> ids;
};

TEST(ConversationNamesTest, ParleyIdsAre32LowercaseHexDigits) {
  EXPECT_TRUE(IsParleyConversationId(kStored));
  EXPECT_FALSE(IsParleyConversationId("0123456789ABCDEF0123456789ABCDEF"));
  EXPECT_FALSE(IsParleyConversationId("conv-123"));
  EXPECT_FALSE(IsClientConversationName(""));
  EXPECT_FALSE(IsClientConversationName(kStored));
  EXPECT_TRUE(IsClientConversationName("conv-123"));
}

TEST(ConversationNamesTest, RenamesOnlyEventsThatNameAConversation) {
  Event ack = Ack{"c1", kStored, "m1"};
  RenameConversation(ack, "conv-123");
  EXPECT_EQ(std::get<Ack>(ack).conversation_id, "conv-123");
  Event token = StreamToken{"m1", 1, "hi"};
  RenameConversation(token, "conv-123");
  EXPECT_EQ(std::get<StreamToken>(token).token, "hi");
}

TEST(ConversationRoomsTest, ViewersOfANameMoveIntoTheStoredConversationsRoomAndKeepTheirName) {
  ConversationRooms rooms;
  Seen by_name, by_id, sender;
  rooms.Join("u", "conv-123", 1, by_name.deliver(), "conv-123");
  rooms.Join("u", "conv-123", 3, sender.deliver(), "conv-123");
  rooms.Named("u", "conv-123", kStored);
  rooms.Join("u", kStored, 2, by_id.deliver());
  EXPECT_EQ(rooms.Members("u", kStored), 3);
  EXPECT_EQ(rooms.Members("u", "conv-123"), 3);

  EXPECT_EQ(rooms.Relay("u", kStored, 3, TypingRelay{kStored, true}), 2);
  // A connection that recorded the name before the move relays to the same room.
  EXPECT_EQ(rooms.Relay("u", "conv-123", 2, TypingRelay{"conv-123", true}), 2);
  EXPECT_EQ(by_name.ids, (std::vector<std::string>{"conv-123", "conv-123"}));
  EXPECT_EQ(by_id.ids, (std::vector<std::string>{kStored}));
  EXPECT_EQ(sender.ids, (std::vector<std::string>{"conv-123"}));

  rooms.Leave("u", "conv-123", 1);
  rooms.Leave("u", "conv-123", 3);
  EXPECT_EQ(rooms.Members("u", kStored), 1);
  rooms.Leave("u", kStored, 2);
  EXPECT_EQ(rooms.Members("u", kStored), 0);
}

TEST(ConversationRoomsTest, NamesArePerUser) {
  ConversationRooms rooms;
  Seen alice, bob;
  rooms.Join("alice", "conv-123", 1, alice.deliver(), "conv-123");
  rooms.Join("bob", "conv-123", 2, bob.deliver(), "conv-123");
  rooms.Named("alice", "conv-123", kStored);
  EXPECT_EQ(rooms.Relay("alice", kStored, 9, TypingRelay{kStored, true}), 1);
  EXPECT_EQ(alice.ids, (std::vector<std::string>{"conv-123"}));
  EXPECT_TRUE(bob.ids.empty());
  EXPECT_EQ(rooms.Members("bob", "conv-123"), 1);
}

// Links that record what rooms ask of them, and say `ready` only when told.
class RecordingLinks : public RoomLinks {
 public:
  struct Link : RoomLink {
    void WhenReady(std::function<void()> ready) override { waiting.push_back(std::move(ready)); }
    void Publish(uint64_t from, const Event& event) override {
      published.emplace_back(from, std::string(EventName(event)));
    }
    void Close() override { closed = true; }
    void Ready() {
      for (auto& ready : waiting) {
        ready();
      }
      waiting.clear();
    }
    std::vector<std::function<void()>> waiting;
    std::vector<std::pair<uint64_t, std::string>> published;
    bool closed = false;
    std::weak_ptr<ConversationRoom> room;
  };

  std::shared_ptr<RoomLink> Open(const std::string& user_id, const std::string& conversation_id,
                                 std::weak_ptr<ConversationRoom> room) override {
    auto link = std::make_shared<Link>();
    link->room = std::move(room);
    opened.push_back({user_id, conversation_id, link});
    return link;
  }

  struct Opened {
    std::string user_id;
    std::string conversation_id;
    std::shared_ptr<Link> link;
  };
  std::vector<Opened> opened;
};

TEST(ConversationRoomsTest, AStoredConversationIsLinkedOncePerEdgeWhileAnyoneHereViewsIt) {
  RecordingLinks links;
  ConversationRooms rooms;
  rooms.SetLinks(&links);
  Seen laptop, phone;
  int joined = 0;
  rooms.Join("u", kStored, 1, laptop.deliver(), "", [&] { ++joined; });
  rooms.Join("u", kStored, 2, phone.deliver(), "", [&] { ++joined; });
  ASSERT_EQ(links.opened.size(), 1u);
  EXPECT_EQ(links.opened[0].user_id, "u");
  EXPECT_EQ(links.opened[0].conversation_id, kStored);
  // `joined` waits for the link: what other edges do after it must reach the member.
  EXPECT_EQ(joined, 0);
  links.opened[0].link->Ready();
  EXPECT_EQ(joined, 2);

  // Signals go to the other members here and out through the link; stream events stay here.
  EXPECT_EQ(rooms.Share("u", kStored, 1, TypingRelay{kStored, true}), 1);
  EXPECT_EQ(rooms.Relay("u", kStored, 1, StreamToken{"m1", 1, "hi"}), 1);
  EXPECT_EQ(links.opened[0].link->published,
            (std::vector<std::pair<uint64_t, std::string>>{{1, "typing"}}));
  // What the link hears from other edges reaches every member.
  std::shared_ptr<ConversationRoom> room = links.opened[0].link->room.lock();
  ASSERT_NE(room, nullptr);
  EXPECT_EQ(room->Relay(0, TypingRelay{kStored, false}, kStored), 2);

  rooms.Leave("u", kStored, 1);
  EXPECT_FALSE(links.opened[0].link->closed);
  rooms.Leave("u", kStored, 2);
  EXPECT_TRUE(links.opened[0].link->closed);
  EXPECT_TRUE(room->retired());
  rooms.Join("u", kStored, 3, phone.deliver());
  EXPECT_EQ(links.opened.size(), 2u);
}

TEST(ConversationRoomsTest, ANameNotStoredYetIsFollowedByNameAndItsLinkMovesToTheStoredRoom) {
  RecordingLinks links;
  ConversationRooms rooms;
  rooms.SetLinks(&links);
  Seen by_name;
  bool joined = false;
  rooms.Join("u", "conv-123", 1, by_name.deliver(), "conv-123", [&] { joined = true; });
  // Followed by its name, so whichever edge stores its first message, this room hears of it.
  ASSERT_EQ(links.opened.size(), 1u);
  EXPECT_EQ(links.opened[0].conversation_id, "conv-123");
  EXPECT_FALSE(joined);
  links.opened[0].link->Ready();
  EXPECT_TRUE(joined);

  // Stored here: the room moves into the conversation's, and the name's link goes with it.
  rooms.Named("u", "conv-123", kStored);
  EXPECT_EQ(links.opened.size(), 1u);
  EXPECT_FALSE(links.opened[0].link->closed);
  EXPECT_EQ(rooms.Members("u", kStored), 1);
  EXPECT_EQ(rooms.Share("u", "conv-123", 2, TypingRelay{"conv-123", true}), 1);
  EXPECT_EQ(links.opened[0].link->published,
            (std::vector<std::pair<uint64_t, std::string>>{{2, "typing"}}));
  // The link, learning it too, gets the stored room to feed.
  std::shared_ptr<ConversationRoom> room =
      rooms.Stored("u", "conv-123", kStored, links.opened[0].link.get());
  ASSERT_NE(room, nullptr);
  EXPECT_EQ(room->id(), kStored);
  EXPECT_EQ(room->Relay(0, TypingRelay{kStored, false}, kStored), 1);
  // Both under the name this member joined by.
  EXPECT_EQ(by_name.ids, (std::vector<std::string>{"conv-123", "conv-123"}));
  rooms.Leave("u", "conv-123", 1);
  EXPECT_TRUE(links.opened[0].link->closed);
}

TEST(ConversationRoomsTest, ANameStoredElsewhereMovesItsRoomOnceItsLinkHearsOfIt) {
  constexpr char kOther[] = "fedcba9876543210fedcba9876543210";
  RecordingLinks links;
  ConversationRooms rooms;
  rooms.SetLinks(&links);
  Seen by_name, by_id, other;
  rooms.Join("u", "conv-9", 1, by_name.deliver(), "conv-9");
  ASSERT_EQ(links.opened.size(), 1u);
  std::shared_ptr<ConversationRoom> room =
      rooms.Stored("u", "conv-9", kOther, links.opened[0].link.get());
  ASSERT_NE(room, nullptr);
  EXPECT_EQ(room->id(), kOther);
  EXPECT_EQ(links.opened.size(), 1u);
  EXPECT_EQ(rooms.Members("u", kOther), 1);
  EXPECT_EQ(rooms.Members("u", "conv-9"), 1);  // Resolved to the stored room.

  // A stored conversation's room with a link of its own keeps it: the name's link is not
  // needed, and closes itself when it gets no room.
  rooms.Join("u", kStored, 2, by_id.deliver());
  rooms.Join("u", "conv-10", 3, other.deliver(), "conv-10");
  ASSERT_EQ(links.opened.size(), 3u);
  EXPECT_EQ(rooms.Stored("u", "conv-10", kStored, links.opened[2].link.get()), nullptr);
  EXPECT_EQ(rooms.Members("u", kStored), 2);
  EXPECT_FALSE(links.opened[1].link->closed);
}

TEST(ConversationRoomsTest, ATurnFindsTheRoomMadeAfterItLookedAndNotARetiredOne) {
  ConversationRooms rooms;
  EXPECT_EQ(rooms.Find("u", kStored), nullptr);
  const uint64_t before = rooms.generation();
  Seen viewer;
  rooms.Join("u", kStored, 1, viewer.deliver());
  EXPECT_NE(rooms.generation(), before);
  std::shared_ptr<ConversationRoom> room = rooms.Find("u", kStored);
  ASSERT_NE(room, nullptr);
  EXPECT_EQ(room->Relay(2, TypingRelay{kStored, true}, kStored), 1);
  rooms.Leave("u", kStored, 1);
  EXPECT_TRUE(room->retired());
  EXPECT_EQ(room->Relay(2, TypingRelay{kStored, true}, kStored), 0);
}

}  // namespace
}  // namespace parley::edge
