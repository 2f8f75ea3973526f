// Conversations a client names ("conv-123") over real WebSockets against the three real
// binaries: created by their first message, continued by the same name, per user, listed with
// their name, and shared in rooms with connections that use the stored id.
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::ParleyStack;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// What a client saw of one answered message: every conversationId its frames carried.
struct Reply {
  std::string ack_conversation_id;
  std::string start_conversation_id;
  std::string user_message_id;
  std::string message_id;
  std::string text;
};

class EdgeNamedConversationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = ParleyStack::Start(
                 StackOptions{
                     .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=2000",
                                         "--sim_max_tokens=8"},
                 })
                 .release();
    ASSERT_NE(stack_, nullptr);
  }

  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  static std::unique_ptr<WsClient> Connect(const std::string& user) {
    absl::StatusOr<std::unique_ptr<WsClient>> client = WsClient::Connect(
        stack_->edge_address(), absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // Reads a reply's frames to its end (after the ack when `with_ack`).
  static Reply ReadReply(WsClient& client, bool with_ack) {
    Reply reply;
    while (true) {
      absl::StatusOr<json::object> event = client.ReadJson();
      if (!event.ok()) {
        ADD_FAILURE() << "reply ended early: " << event.status();
        return reply;
      }
      const std::string type = Str(*event, "type");
      if (type == "ack" && with_ack) {
        reply.ack_conversation_id = Str(*event, "conversationId");
        reply.user_message_id = Str(*event, "messageId");
      } else if (type == "message_added" && !with_ack) {
        reply.ack_conversation_id = Str(*event, "conversationId");
        reply.user_message_id = Str(event->at("message").as_object(), "id");
      } else if (type == "stream_start") {
        reply.start_conversation_id = Str(*event, "conversationId");
        reply.message_id = Str(*event, "messageId");
      } else if (type == "stream_token") {
        reply.text += Str(*event, "token");
      } else if (type == "stream_complete") {
        return reply;
      } else if (type != "heartbeat") {
        ADD_FAILURE() << "unexpected frame: " << json::serialize(*event);
        return reply;
      }
    }
  }

  static Reply Send(WsClient& client, const std::string& id, const std::string& content,
                    const std::string& conversation_id) {
    EXPECT_TRUE(client
                    .SendJson({{"type", "message"},
                               {"id", id},
                               {"content", content},
                               {"conversationId", conversation_id}})
                    .ok());
    return ReadReply(client, /*with_ack=*/true);
  }

  static json::object History(WsClient& client, const std::string& conversation_id) {
    EXPECT_TRUE(client.SendJson({{"type", "history"}, {"conversationId", conversation_id}}).ok());
    std::optional<json::object> history = ReadUntil(client, "history");
    return history.value_or(json::object{});
  }

  static void Join(WsClient& client, const std::string& conversation_id) {
    ASSERT_TRUE(client.SendJson({{"type", "join"}, {"conversationId", conversation_id}}).ok());
    std::optional<json::object> joined = ReadUntil(client, "joined");
    ASSERT_TRUE(joined.has_value());
    EXPECT_EQ(Str(*joined, "conversationId"), conversation_id);
  }

  // The stored id of the user's conversation named `name`, from the conversation list.
  static std::string StoredIdOf(WsClient& client, const std::string& name) {
    EXPECT_TRUE(client.SendJson({{"type", "history"}}).ok());
    std::optional<json::object> page = ReadUntil(client, "history");
    if (!page.has_value()) {
      ADD_FAILURE() << "no conversation list";
      return "";
    }
    for (const json::value& conversation : page->at("conversations").as_array()) {
      const json::object& c = conversation.as_object();
      if (c.contains("clientConversationId") && Str(c, "clientConversationId") == name) {
        return Str(c, "id");
      }
    }
    ADD_FAILURE() << "no conversation named " << name << ": " << json::serialize(*page);
    return "";
  }

  static ParleyStack* stack_;
};

ParleyStack* EdgeNamedConversationTest::stack_ = nullptr;

TEST_F(EdgeNamedConversationTest, ANameIsCreatedByItsFirstMessageAndContinuedByEveryLaterOne) {
  std::unique_ptr<WsClient> first = Connect("alice");
  ASSERT_NE(first, nullptr);
  const Reply one = Send(*first, "n-1", "Remember the number seven.", "conv-123");
  EXPECT_EQ(one.ack_conversation_id, "conv-123");
  EXPECT_EQ(one.start_conversation_id, "conv-123");
  ASSERT_FALSE(one.text.empty());

  // Another connection, later: the same stored conversation, its history the model's context.
  std::unique_ptr<WsClient> second = Connect("alice");
  ASSERT_NE(second, nullptr);
  const Reply two = Send(*second, "n-2", "Which number was it?", "conv-123");
  EXPECT_EQ(two.ack_conversation_id, "conv-123");
  const json::object history = History(*second, "conv-123");
  EXPECT_EQ(Str(history, "conversationId"), "conv-123");
  ASSERT_TRUE(history.contains("messages"));
  const json::array& messages = history.at("messages").as_array();
  ASSERT_EQ(messages.size(), 4u) << json::serialize(history);
  EXPECT_EQ(Str(messages[0].as_object(), "id"), one.user_message_id);
  EXPECT_EQ(Str(messages[1].as_object(), "content"), one.text);
  EXPECT_EQ(Str(messages[2].as_object(), "id"), two.user_message_id);
  EXPECT_EQ(Str(messages[3].as_object(), "parentId"), two.user_message_id);
  EXPECT_EQ(Str(messages[2].as_object(), "parentId"), one.message_id);

  // The conversation list shows it with its stored id and the client's name.
  ASSERT_TRUE(second->SendJson({{"type", "history"}}).ok());
  std::optional<json::object> page = ReadUntil(*second, "history");
  ASSERT_TRUE(page.has_value());
  int named = 0;
  for (const json::value& conversation : page->at("conversations").as_array()) {
    const json::object& c = conversation.as_object();
    if (c.contains("clientConversationId") && Str(c, "clientConversationId") == "conv-123") {
      ++named;
      EXPECT_EQ(Str(c, "id").size(), 32u);
      EXPECT_EQ(Str(c, "title"), "Remember the number seven.");
    }
  }
  EXPECT_EQ(named, 1) << json::serialize(*page);
}

TEST_F(EdgeNamedConversationTest, NamesArePerUser) {
  std::unique_ptr<WsClient> alice = Connect("alice-2");
  std::unique_ptr<WsClient> bob = Connect("bob-2");
  ASSERT_TRUE(alice && bob);
  Send(*alice, "p-1", "Alice's secret.", "shared-name");
  Send(*bob, "p-1", "Bob's note.", "shared-name");
  const json::object bobs = History(*bob, "shared-name");
  ASSERT_TRUE(bobs.contains("messages"));
  const json::array& messages = bobs.at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u) << json::serialize(bobs);
  EXPECT_EQ(Str(messages[0].as_object(), "content"), "Bob's note.");
  // A name never used is no conversation.
  ASSERT_TRUE(bob->SendJson({{"type", "history"}, {"conversationId", "never-used"}}).ok());
  std::optional<json::object> error = ReadUntil(*bob, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "not_found");
}

TEST_F(EdgeNamedConversationTest, ViewersOfANameNotUsedYetSeeItsFirstMessageAndLaterOnesToo) {
  std::unique_ptr<WsClient> watcher = Connect("carol");
  std::unique_ptr<WsClient> sender = Connect("carol");
  ASSERT_TRUE(watcher && sender);
  // Joining a name nobody used creates nothing, yet the first message reaches the viewer.
  Join(*watcher, "conv-new");
  const Reply sent = Send(*sender, "v-1", "Hello room", "conv-new");
  const Reply seen = ReadReply(*watcher, /*with_ack=*/false);
  EXPECT_EQ(seen.ack_conversation_id, "conv-new");
  EXPECT_EQ(seen.start_conversation_id, "conv-new");
  EXPECT_EQ(seen.user_message_id, sent.user_message_id);
  EXPECT_EQ(seen.message_id, sent.message_id);
  EXPECT_EQ(seen.text, sent.text);

  // A connection that knows the stored id shares the room; each hears its own id.
  const json::object listed = History(*sender, "conv-new");
  ASSERT_TRUE(listed.contains("messages"));
  ASSERT_TRUE(sender->SendJson({{"type", "history"}}).ok());
  std::optional<json::object> page = ReadUntil(*sender, "history");
  ASSERT_TRUE(page.has_value());
  std::string stored_id;
  for (const json::value& conversation : page->at("conversations").as_array()) {
    const json::object& c = conversation.as_object();
    if (c.contains("clientConversationId") && Str(c, "clientConversationId") == "conv-new") {
      stored_id = Str(c, "id");
    }
  }
  ASSERT_EQ(stored_id.size(), 32u) << json::serialize(*page);
  std::unique_ptr<WsClient> by_id = Connect("carol");
  ASSERT_NE(by_id, nullptr);
  Join(*by_id, stored_id);
  const Reply again = Send(*sender, "v-2", "Still here?", "conv-new");
  EXPECT_EQ(again.ack_conversation_id, "conv-new");
  const Reply seen_by_name = ReadReply(*watcher, /*with_ack=*/false);
  EXPECT_EQ(seen_by_name.ack_conversation_id, "conv-new");
  EXPECT_EQ(seen_by_name.text, again.text);
  const Reply seen_by_id = ReadReply(*by_id, /*with_ack=*/false);
  EXPECT_EQ(seen_by_id.ack_conversation_id, stored_id);
  EXPECT_EQ(seen_by_id.start_conversation_id, stored_id);
  EXPECT_EQ(seen_by_id.text, again.text);

  // Typing from the connection that uses the stored id reaches the one that uses the name.
  ASSERT_TRUE(by_id->SendJson({{"type", "typing"}, {"conversationId", stored_id}}).ok());
  std::optional<json::object> typing = ReadUntil(*watcher, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_EQ(Str(*typing, "conversationId"), "conv-new");
}

TEST_F(EdgeNamedConversationTest, RegenerateAndEditNameAMessageSoTheirFramesCarryTheStoredIds) {
  std::unique_ptr<WsClient> client = Connect("dave");
  std::unique_ptr<WsClient> watcher = Connect("dave");
  ASSERT_TRUE(client && watcher);
  const Reply first = Send(*client, "g-1", "Name a colour.", "conv-regen");
  ASSERT_EQ(first.ack_conversation_id, "conv-regen");
  const std::string stored_id = StoredIdOf(*client, "conv-regen");
  ASSERT_EQ(stored_id.size(), 32u);
  Join(*watcher, "conv-regen");

  // A regenerate names a stored message, not the conversation: its frames name the conversation
  // by its stored id, and the new reply by its stored id.
  ASSERT_TRUE(
      client->SendJson({{"type", "regenerate"}, {"id", "g-2"}, {"messageId", first.message_id}})
          .ok());
  const Reply regenerated = ReadReply(*client, /*with_ack=*/true);
  EXPECT_EQ(regenerated.ack_conversation_id, stored_id);
  EXPECT_EQ(regenerated.user_message_id, first.user_message_id);
  EXPECT_EQ(regenerated.start_conversation_id, stored_id);
  EXPECT_NE(regenerated.message_id, first.message_id);
  // A connection that joined by the name sees it under the name.
  const Reply seen = ReadReply(*watcher, /*with_ack=*/false);
  EXPECT_EQ(seen.start_conversation_id, "conv-regen");
  EXPECT_EQ(seen.message_id, regenerated.message_id);
  EXPECT_EQ(seen.text, regenerated.text);

  // So does an edit, whose new user message is stored as a sibling of the old.
  ASSERT_TRUE(client
                  ->SendJson({{"type", "edit"},
                              {"id", "g-3"},
                              {"messageId", first.user_message_id},
                              {"content", "Name a fruit."}})
                  .ok());
  const Reply edited = ReadReply(*client, /*with_ack=*/true);
  EXPECT_EQ(edited.ack_conversation_id, stored_id);
  EXPECT_EQ(edited.start_conversation_id, stored_id);
  EXPECT_NE(edited.user_message_id, first.user_message_id);
  const Reply seen_edit = ReadReply(*watcher, /*with_ack=*/false);
  EXPECT_EQ(seen_edit.ack_conversation_id, "conv-regen");
  EXPECT_EQ(seen_edit.user_message_id, edited.user_message_id);
  EXPECT_EQ(seen_edit.message_id, edited.message_id);

  // Every id the frames carried is a stored message of the one conversation of that name.
  const json::object history = History(*client, "conv-regen");
  ASSERT_TRUE(history.contains("messages")) << json::serialize(history);
  std::map<std::string, std::string> stored;  // id -> content
  for (const json::value& message : history.at("messages").as_array()) {
    stored[Str(message.as_object(), "id")] = Str(message.as_object(), "content");
  }
  EXPECT_EQ(stored.size(), 5u) << json::serialize(history);
  EXPECT_EQ(stored[first.user_message_id], "Name a colour.");
  EXPECT_EQ(stored[first.message_id], first.text);
  EXPECT_EQ(stored[regenerated.message_id], regenerated.text);
  EXPECT_EQ(stored[edited.user_message_id], "Name a fruit.");
  EXPECT_EQ(stored[edited.message_id], edited.text);
  EXPECT_EQ(StoredIdOf(*client, "conv-regen"), stored_id);
}

}  // namespace
}  // namespace parley
