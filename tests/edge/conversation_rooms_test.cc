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

}  // namespace
}  // namespace parley::edge
