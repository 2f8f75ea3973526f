// The conversation frames over a real WebSocket against the three real binaries: listing
// conversations and messages, regenerating and editing replies (siblings in the message tree,
// each answered from its own branch), and typing relayed between one user's connections.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::Int;
using ::parley::testing::ParleyStack;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// What a client saw of one answered message.
struct Reply {
  std::string conversation_id;
  std::string user_message_id;  // From the ack.
  std::string message_id;       // From stream_start.
  std::string text;
  int64_t prompt_tokens = -1;
};

class EdgeConversationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = ParleyStack::Start(
                 StackOptions{
                     .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=2000",
                                         "--sim_max_tokens=12"},
                     .edge_flags = {"--connection_typing_per_minute=60"},
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

  // Sends `frame` (a message, regenerate or edit) and reads its answer to the end.
  static Reply Answer(WsClient& client, const json::object& frame) {
    Reply reply;
    if (!frame.empty()) {  // Empty: the frame was sent already.
      EXPECT_TRUE(client.SendJson(frame).ok());
    }
    while (true) {
      absl::StatusOr<json::object> event = client.ReadJson();
      if (!event.ok()) {
        ADD_FAILURE() << "reply ended early: " << event.status();
        return reply;
      }
      const std::string type = Str(*event, "type");
      if (type == "ack") {
        reply.conversation_id = Str(*event, "conversationId");
        reply.user_message_id = Str(*event, "messageId");
      } else if (type == "stream_start") {
        reply.message_id = Str(*event, "messageId");
      } else if (type == "stream_token") {
        reply.text += Str(*event, "token");
      } else if (type == "stream_complete") {
        reply.prompt_tokens = Int(event->at("usage").as_object(), "promptTokens");
        EXPECT_GT(reply.prompt_tokens, 0);
        EXPECT_FALSE(reply.text.empty());
        return reply;
      } else if (type != "heartbeat") {
        ADD_FAILURE() << "unexpected frame: " << json::serialize(*event);
        return reply;
      }
    }
  }

  static json::object Message(const std::string& id, const std::string& content,
                              const std::string& conversation_id = "") {
    json::object frame{{"type", "message"}, {"id", id}, {"content", content}};
    if (!conversation_id.empty()) {
      frame["conversationId"] = conversation_id;
    }
    return frame;
  }

  // The conversation's messages as the `messages` frame lists them, oldest first.
  static json::array Messages(WsClient& client, const std::string& conversation_id,
                              const std::string& leaf = "") {
    json::object frame{{"type", "messages"}, {"conversationId", conversation_id}};
    if (!leaf.empty()) {
      frame["leafMessageId"] = leaf;
    }
    EXPECT_TRUE(client.SendJson(frame).ok());
    std::optional<json::object> page = ReadUntil(client, "messages");
    if (!page.has_value()) {
      return {};
    }
    EXPECT_EQ(Str(*page, "conversationId"), conversation_id);
    return page->at("messages").as_array();
  }

  // The next frame is the pong to a ping: nothing else was queued for this client.
  static void ExpectNothingPending(WsClient& client) {
    ASSERT_TRUE(client.SendJson(json::object{{"type", "ping"}}).ok());
    absl::StatusOr<json::object> next = client.ReadJson();
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_EQ(Str(*next, "type"), "pong") << json::serialize(*next);
  }

  static ParleyStack* stack_;
};

ParleyStack* EdgeConversationTest::stack_ = nullptr;

TEST_F(EdgeConversationTest, HistoryListsConversationsAndMessagesListsTheirMessages) {
  std::unique_ptr<WsClient> client = Connect("lister");
  ASSERT_NE(client, nullptr);
  const Reply first = Answer(*client, Message("list-1", "First conversation"));
  const Reply second = Answer(*client, Message("list-2", "Second conversation"));
  ASSERT_NE(first.conversation_id, second.conversation_id);

  ASSERT_TRUE(client->SendJson(json::object{{"type", "history"}}).ok());
  std::optional<json::object> list = ReadUntil(*client, "history");
  ASSERT_TRUE(list.has_value());
  const json::array& conversations = list->at("conversations").as_array();
  ASSERT_EQ(conversations.size(), 2u) << json::serialize(*list);
  // Newest first.
  EXPECT_EQ(Str(conversations[0].as_object(), "id"), second.conversation_id);
  EXPECT_EQ(Str(conversations[1].as_object(), "id"), first.conversation_id);
  EXPECT_FALSE(Str(conversations[0].as_object(), "createdAt").empty());
  // A new conversation is named after its first message.
  EXPECT_EQ(Str(conversations[0].as_object(), "title"), "Second conversation");
  EXPECT_EQ(Str(*list, "nextPageToken"), "");

  ASSERT_TRUE(client->SendJson(json::object{{"type", "history"}, {"pageSize", 1}}).ok());
  list = ReadUntil(*client, "history");
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->at("conversations").as_array().size(), 1u);
  const std::string token = Str(*list, "nextPageToken");
  ASSERT_FALSE(token.empty());
  ASSERT_TRUE(
      client->SendJson(json::object{{"type", "history"}, {"pageSize", 1}, {"pageToken", token}})
          .ok());
  list = ReadUntil(*client, "history");
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->at("conversations").as_array().size(), 1u);
  EXPECT_EQ(Str(list->at("conversations").as_array()[0].as_object(), "id"), first.conversation_id);

  const json::array messages = Messages(*client, first.conversation_id);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(Str(messages[0].as_object(), "role"), "user");
  EXPECT_EQ(Str(messages[0].as_object(), "content"), "First conversation");
  EXPECT_EQ(Str(messages[1].as_object(), "role"), "assistant");
  EXPECT_EQ(Str(messages[1].as_object(), "content"), first.text);
  EXPECT_EQ(Str(messages[1].as_object(), "parentId"), first.user_message_id);
  EXPECT_EQ(Str(messages[1].as_object(), "status"), "complete");

  // The original form still answers with the newest messages.
  ASSERT_TRUE(
      client->SendJson(json::object{{"type", "history"}, {"conversationId", first.conversation_id}})
          .ok());
  std::optional<json::object> history = ReadUntil(*client, "history");
  ASSERT_TRUE(history.has_value());
  EXPECT_EQ(history->at("messages").as_array().size(), 2u);

  // Someone else's conversation does not exist for this user.
  std::unique_ptr<WsClient> stranger = Connect("stranger");
  ASSERT_NE(stranger, nullptr);
  ASSERT_TRUE(
      stranger
          ->SendJson(json::object{{"type", "messages"}, {"conversationId", first.conversation_id}})
          .ok());
  std::optional<json::object> error = ReadUntil(*stranger, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "not_found");
}

TEST_F(EdgeConversationTest, RegenerateAddsASiblingReplyFromTheSameContext) {
  std::unique_ptr<WsClient> client = Connect("regenerator");
  ASSERT_NE(client, nullptr);
  const Reply original = Answer(*client, Message("regen-1", "Tell me something"));
  ASSERT_FALSE(original.message_id.empty());

  const json::object regenerate{
      {"type", "regenerate"}, {"id", "regen-2"}, {"messageId", original.message_id}};
  const Reply again = Answer(*client, regenerate);
  EXPECT_EQ(again.conversation_id, original.conversation_id);
  EXPECT_EQ(again.user_message_id, original.user_message_id);
  EXPECT_NE(again.message_id, original.message_id);
  // The model saw the same conversation: the earlier reply is a sibling, not context.
  EXPECT_EQ(again.prompt_tokens, original.prompt_tokens);

  // A repeated regenerate streams the reply it already made instead of making a third.
  const Reply repeated = Answer(*client, regenerate);
  EXPECT_EQ(repeated.message_id, again.message_id);
  EXPECT_EQ(repeated.text, again.text);

  const json::array messages = Messages(*client, original.conversation_id);
  ASSERT_EQ(messages.size(), 3u) << json::serialize(messages);
  EXPECT_EQ(Str(messages[1].as_object(), "id"), original.message_id);
  EXPECT_EQ(Str(messages[2].as_object(), "id"), again.message_id);
  EXPECT_EQ(Str(messages[1].as_object(), "parentId"), original.user_message_id);
  EXPECT_EQ(Str(messages[2].as_object(), "parentId"), original.user_message_id);
  EXPECT_EQ(Str(messages[2].as_object(), "content"), again.text);

  // Regenerating from the user message works the same way.
  const Reply third = Answer(*client, json::object{{"type", "regenerate"},
                                                   {"id", "regen-3"},
                                                   {"messageId", original.user_message_id}});
  EXPECT_EQ(third.user_message_id, original.user_message_id);
  EXPECT_EQ(Messages(*client, original.conversation_id).size(), 4u);
}

TEST_F(EdgeConversationTest, EditAnswersTheNewTextOnItsOwnBranch) {
  std::unique_ptr<WsClient> client = Connect("editor");
  ASSERT_NE(client, nullptr);
  const Reply first = Answer(*client, Message("edit-1", "A first question with many words in it"));
  const Reply second =
      Answer(*client, Message("edit-2", "A follow-up question", first.conversation_id));

  // Editing the first message makes a second root: its reply sees none of the old branch, so
  // the model's prompt is the same as a new conversation with that text.
  const Reply edited_root = Answer(*client, json::object{{"type", "edit"},
                                                         {"id", "edit-3"},
                                                         {"messageId", first.user_message_id},
                                                         {"content", "Short"}});
  EXPECT_EQ(edited_root.conversation_id, first.conversation_id);
  EXPECT_NE(edited_root.user_message_id, first.user_message_id);
  const Reply fresh = Answer(*client, Message("edit-4", "Short"));
  EXPECT_NE(fresh.conversation_id, first.conversation_id);
  EXPECT_EQ(edited_root.prompt_tokens, fresh.prompt_tokens);

  // Editing the follow-up keeps the first exchange as context.
  const Reply edited_follow_up = Answer(*client, json::object{{"type", "edit"},
                                                              {"id", "edit-5"},
                                                              {"messageId", second.user_message_id},
                                                              {"content", "A follow-up question"}});
  EXPECT_EQ(edited_follow_up.prompt_tokens, second.prompt_tokens);

  const json::array branch =
      Messages(*client, first.conversation_id, /*leaf=*/edited_follow_up.message_id);
  ASSERT_EQ(branch.size(), 4u) << json::serialize(branch);
  EXPECT_EQ(Str(branch[0].as_object(), "id"), first.user_message_id);
  EXPECT_EQ(Str(branch[1].as_object(), "id"), first.message_id);
  EXPECT_EQ(Str(branch[2].as_object(), "id"), edited_follow_up.user_message_id);
  EXPECT_EQ(Str(branch[2].as_object(), "parentId"), first.message_id);
  const json::array root_branch =
      Messages(*client, first.conversation_id, /*leaf=*/edited_root.message_id);
  ASSERT_EQ(root_branch.size(), 2u);
  EXPECT_EQ(Str(root_branch[0].as_object(), "content"), "Short");
  EXPECT_EQ(Str(root_branch[0].as_object(), "parentId"), "");
  // Every version stays stored.
  EXPECT_EQ(Messages(*client, first.conversation_id).size(), 8u);
}

TEST_F(EdgeConversationTest, AMessageCanContinueAnOlderBranch) {
  std::unique_ptr<WsClient> client = Connect("brancher");
  ASSERT_NE(client, nullptr);
  const Reply first = Answer(*client, Message("branch-1", "Where should we go?"));
  const Reply second =
      Answer(*client, Message("branch-2", "Somewhere warm", first.conversation_id));

  // Continue after the first reply instead of the newest message.
  json::object frame = Message("branch-3", "Somewhere cold", first.conversation_id);
  frame["parentId"] = first.message_id;
  const Reply other = Answer(*client, frame);
  EXPECT_EQ(other.prompt_tokens, second.prompt_tokens) << "same context length, other branch";
  const json::array branch = Messages(*client, first.conversation_id, other.message_id);
  ASSERT_EQ(branch.size(), 4u) << json::serialize(branch);
  EXPECT_EQ(Str(branch[1].as_object(), "id"), first.message_id);
  EXPECT_EQ(Str(branch[2].as_object(), "content"), "Somewhere cold");

  frame = Message("branch-4", "Lost", first.conversation_id);
  frame["parentId"] = "no-such-message";
  ASSERT_TRUE(client->SendJson(frame).ok());
  std::optional<json::object> error = ReadUntil(*client, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "not_found");
  EXPECT_EQ(Str(*error, "id"), "branch-4");
}

TEST_F(EdgeConversationTest, EditAndRegenerateRefuseWhatTheyCannotUse) {
  std::unique_ptr<WsClient> client = Connect("refused");
  ASSERT_NE(client, nullptr);
  const Reply reply = Answer(*client, Message("refuse-1", "Hello"));

  ASSERT_TRUE(client
                  ->SendJson(json::object{{"type", "edit"},
                                          {"id", "refuse-2"},
                                          {"messageId", reply.message_id},
                                          {"content", "x"}})
                  .ok());
  std::optional<json::object> error = ReadUntil(*client, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "invalid_frame") << "a reply cannot be edited";
  EXPECT_EQ(Str(*error, "id"), "refuse-2");

  for (const char* type : {"edit", "regenerate"}) {
    ASSERT_TRUE(client
                    ->SendJson(json::object{{"type", type},
                                            {"id", absl::StrCat("refuse-", type)},
                                            {"messageId", "no-such-message"},
                                            {"content", "x"}})
                    .ok());
    error = ReadUntil(*client, "error");
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(Str(*error, "code"), "not_found") << type;
  }
  // Nothing was stored by the refused requests.
  EXPECT_EQ(Messages(*client, reply.conversation_id).size(), 2u);
}

TEST_F(EdgeConversationTest, TheSameMessageSentTwiceAtOnceIsAnsweredOnce) {
  // Two attempts of one message race on two edge instances (a client retrying on a new
  // connection while its first is still open): one reply is generated and both follow it.
  std::unique_ptr<testing::ChildProcess> second_edge = stack_->StartEdge();
  ASSERT_NE(second_edge, nullptr);
  const std::string second_address = second_edge->WaitForListening();
  std::unique_ptr<WsClient> first = Connect("racer");
  absl::StatusOr<std::unique_ptr<WsClient>> second =
      WsClient::Connect(second_address, "/ws/chat?userId=racer", {"parley.v1"});
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  const json::object message = Message("race-1", "Only once, please");
  ASSERT_TRUE(first->SendJson(message).ok());
  ASSERT_TRUE((*second)->SendJson(message).ok());
  const Reply a = Answer(*first, json::object{});
  const Reply b = Answer(**second, json::object{});
  EXPECT_EQ(a.conversation_id, b.conversation_id);
  EXPECT_EQ(a.user_message_id, b.user_message_id);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(Messages(*first, a.conversation_id).size(), 2u);
}

TEST_F(EdgeConversationTest, TypingReachesTheUsersOtherViewersOnly) {
  std::unique_ptr<WsClient> laptop = Connect("typist");
  std::unique_ptr<WsClient> phone = Connect("typist");
  std::unique_ptr<WsClient> elsewhere = Connect("typist");
  std::unique_ptr<WsClient> stranger = Connect("not-the-typist");
  ASSERT_TRUE(laptop && phone && elsewhere && stranger);
  const Reply reply = Answer(*laptop, Message("typing-1", "Hi"));
  const json::object join{{"type", "join"}, {"conversationId", reply.conversation_id}};
  const json::object typing{{"type", "typing"}, {"conversationId", reply.conversation_id}};

  // Typing before joining is refused.
  ASSERT_TRUE(laptop->SendJson(typing).ok());
  std::optional<json::object> error = ReadUntil(*laptop, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "invalid_frame");

  // Only the owner may join.
  ASSERT_TRUE(stranger->SendJson(join).ok());
  error = ReadUntil(*stranger, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "not_found");

  for (WsClient* client : {laptop.get(), phone.get()}) {
    ASSERT_TRUE(client->SendJson(join).ok());
    std::optional<json::object> joined = ReadUntil(*client, "joined");
    ASSERT_TRUE(joined.has_value());
    EXPECT_EQ(Str(*joined, "conversationId"), reply.conversation_id);
  }

  ASSERT_TRUE(laptop->SendJson(typing).ok());
  absl::StatusOr<json::object> relayed = phone->ReadJson();
  ASSERT_TRUE(relayed.ok()) << relayed.status();
  EXPECT_EQ(
      json::serialize(*relayed),
      json::serialize(json::object{
          {"type", "typing"}, {"conversationId", reply.conversation_id}, {"isTyping", true}}));
  ExpectNothingPending(*laptop);     // No echo to the typist.
  ExpectNothingPending(*elsewhere);  // Not viewing the conversation.
  ExpectNothingPending(*stranger);

  ASSERT_TRUE(
      phone
          ->SendJson(json::object{
              {"type", "typing"}, {"conversationId", reply.conversation_id}, {"isTyping", false}})
          .ok());
  relayed = laptop->ReadJson();
  ASSERT_TRUE(relayed.ok()) << relayed.status();
  EXPECT_EQ(relayed->at("isTyping"), false);

  // After leaving, the phone hears nothing more.
  ASSERT_TRUE(
      phone->SendJson(json::object{{"type", "leave"}, {"conversationId", reply.conversation_id}})
          .ok());
  ASSERT_TRUE(ReadUntil(*phone, "left").has_value());
  ASSERT_TRUE(laptop->SendJson(typing).ok());
  ExpectNothingPending(*laptop);
  ExpectNothingPending(*phone);

  // Typing is never stored.
  EXPECT_EQ(Messages(*laptop, reply.conversation_id).size(), 2u);
}

TEST_F(EdgeConversationTest, ViewersSeeANewMessageAndItsReplyLive) {
  std::unique_ptr<WsClient> laptop = Connect("viewer");
  std::unique_ptr<WsClient> phone = Connect("viewer");
  std::unique_ptr<WsClient> elsewhere = Connect("viewer");
  ASSERT_TRUE(laptop && phone && elsewhere);
  const Reply first = Answer(*laptop, Message("live-1", "Hi"));
  ASSERT_TRUE(
      phone->SendJson(json::object{{"type", "join"}, {"conversationId", first.conversation_id}})
          .ok());
  ASSERT_TRUE(ReadUntil(*phone, "joined").has_value());

  const Reply sent = Answer(*laptop, Message("live-2", "What is new?", first.conversation_id));
  // The phone sees the message, then the reply exactly as the laptop did.
  absl::StatusOr<json::object> added = phone->ReadJson();
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(Str(*added, "type"), "message_added") << json::serialize(*added);
  EXPECT_EQ(Str(*added, "conversationId"), first.conversation_id);
  const json::object& message = added->at("message").as_object();
  EXPECT_EQ(Str(message, "id"), sent.user_message_id);
  EXPECT_EQ(Str(message, "content"), "What is new?");
  EXPECT_EQ(Str(message, "parentId"), first.message_id);
  Reply seen;
  while (true) {
    absl::StatusOr<json::object> event = phone->ReadJson();
    ASSERT_TRUE(event.ok()) << event.status();
    const std::string type = Str(*event, "type");
    if (type == "stream_start") {
      seen.message_id = Str(*event, "messageId");
    } else if (type == "stream_token") {
      seen.text += Str(*event, "token");
    } else if (type == "stream_complete") {
      break;
    }
  }
  EXPECT_EQ(seen.message_id, sent.message_id);
  EXPECT_EQ(seen.text, sent.text);
  ExpectNothingPending(*elsewhere);
  ExpectNothingPending(*phone);
}

TEST_F(EdgeConversationTest, DevicesOnAnotherEdgeSeeTypingAndMessagesLive) {
  // A second edge on the same persistence: rooms meet there, not in either edge.
  std::unique_ptr<testing::ChildProcess> other_edge =
      stack_->StartEdge({"--connection_typing_per_minute=60"});
  ASSERT_NE(other_edge, nullptr);
  const std::string other_address = other_edge->WaitForListening();
  ASSERT_FALSE(other_address.empty());
  std::unique_ptr<WsClient> laptop = Connect("two-edges");
  absl::StatusOr<std::unique_ptr<WsClient>> phone_or =
      WsClient::Connect(other_address, "/ws/chat?userId=two-edges", {"parley.v1"});
  ASSERT_TRUE(phone_or.ok()) << phone_or.status();
  std::unique_ptr<WsClient> phone = *std::move(phone_or);
  ASSERT_NE(laptop, nullptr);
  const Reply first = Answer(*laptop, Message("edges-1", "Hi"));
  for (WsClient* client : {laptop.get(), phone.get()}) {
    ASSERT_TRUE(
        client->SendJson(json::object{{"type", "join"}, {"conversationId", first.conversation_id}})
            .ok());
    ASSERT_TRUE(ReadUntil(*client, "joined").has_value());
  }

  ASSERT_TRUE(
      phone->SendJson(json::object{{"type", "typing"}, {"conversationId", first.conversation_id}})
          .ok());
  absl::StatusOr<json::object> relayed = laptop->ReadJson();
  ASSERT_TRUE(relayed.ok()) << relayed.status();
  EXPECT_EQ(
      json::serialize(*relayed),
      json::serialize(json::object{
          {"type", "typing"}, {"conversationId", first.conversation_id}, {"isTyping", true}}));

  const Reply sent = Answer(*laptop, Message("edges-2", "Over there?", first.conversation_id));
  absl::StatusOr<json::object> added = phone->ReadJson();
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(Str(*added, "type"), "message_added") << json::serialize(*added);
  EXPECT_EQ(Str(added->at("message").as_object(), "id"), sent.user_message_id);
  EXPECT_EQ(Str(added->at("message").as_object(), "content"), "Over there?");
  Reply seen;
  while (true) {
    absl::StatusOr<json::object> event = phone->ReadJson();
    ASSERT_TRUE(event.ok()) << event.status();
    const std::string type = Str(*event, "type");
    if (type == "stream_start") {
      seen.message_id = Str(*event, "messageId");
    } else if (type == "stream_token") {
      seen.text += Str(*event, "token");
    } else if (type == "stream_complete") {
      break;
    }
  }
  EXPECT_EQ(seen.message_id, sent.message_id);
  EXPECT_EQ(seen.text, sent.text);
  // Nothing arrives twice on either edge.
  ExpectNothingPending(*phone);
  ExpectNothingPending(*laptop);
}

TEST_F(EdgeConversationTest, TypingIsRateLimitedPerConnection) {
  std::unique_ptr<WsClient> client = Connect("fast-typist");
  ASSERT_NE(client, nullptr);
  const Reply reply = Answer(*client, Message("fast-1", "Hi"));
  ASSERT_TRUE(
      client->SendJson(json::object{{"type", "join"}, {"conversationId", reply.conversation_id}})
          .ok());
  ASSERT_TRUE(ReadUntil(*client, "joined").has_value());
  // The burst is 10 and the rate one a second (the edge runs with 60 a minute): of 30 sent back
  // to back, some are refused.
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(
        client
            ->SendJson(json::object{{"type", "typing"}, {"conversationId", reply.conversation_id}})
            .ok());
  }
  std::optional<json::object> error = ReadUntil(*client, "error");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(Str(*error, "code"), "rate_limited");
  EXPECT_GT(Int(*error, "retryAfterMs"), 0);
}

}  // namespace
}  // namespace parley
