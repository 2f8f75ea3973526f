#include "edge/protocol/socket_io_chat.h"

#include <string>
#include <variant>

#include "boost/json/parse.hpp"
#include "gtest/gtest.h"

namespace parley::edge::socket_io {
namespace {

namespace json = boost::json;

Command DecodeOk(const std::string& args) {
  std::variant<Command, ChatEventError> decoded = DecodeChatEvent(json::parse(args).as_array());
  if (const ChatEventError* error = std::get_if<ChatEventError>(&decoded)) {
    ADD_FAILURE() << args << " -> " << error->message;
    return Ping{};
  }
  return std::get<Command>(decoded);
}

ChatEventError DecodeError(const std::string& args) {
  std::variant<Command, ChatEventError> decoded = DecodeChatEvent(json::parse(args).as_array());
  if (!std::holds_alternative<ChatEventError>(decoded)) {
    ADD_FAILURE() << args << " decoded without error";
    return {};
  }
  return std::get<ChatEventError>(decoded);
}

TEST(SocketIoChatTest, DecodesTheSeedsChatSend) {
  const Command command =
      DecodeOk(R"(["chat:send",{"conversationId":"conv-123","content":"Hello ☃","role":"user"}])");
  const SendMessage* send = std::get_if<SendMessage>(&command);
  ASSERT_NE(send, nullptr);
  EXPECT_EQ(send->conversation_id, "conv-123");
  EXPECT_EQ(send->content, "Hello ☃");
  EXPECT_EQ(send->id, "");  // The session gives each send its idempotency key.
  EXPECT_EQ(send->model, "");
}

TEST(SocketIoChatTest, ASendWithoutAConversationStartsANewOne) {
  const Command command = DecodeOk(R"(["chat:send",{"content":"Hi"}])");
  ASSERT_TRUE(std::holds_alternative<SendMessage>(command));
  EXPECT_EQ(std::get<SendMessage>(command).conversation_id, "");
}

TEST(SocketIoChatTest, DecodesTypingJoinAndLeave) {
  const Command typing =
      DecodeOk(R"(["chat:typing",{"conversationId":"conv-123","isTyping":false}])");
  ASSERT_TRUE(std::holds_alternative<Typing>(typing));
  EXPECT_EQ(std::get<Typing>(typing).conversation_id, "conv-123");
  EXPECT_FALSE(std::get<Typing>(typing).is_typing);

  const Command join = DecodeOk(R"(["chat:join",{"conversationId":"conv-123"}])");
  ASSERT_TRUE(std::holds_alternative<JoinConversation>(join));
  EXPECT_EQ(std::get<JoinConversation>(join).conversation_id, "conv-123");

  const Command leave = DecodeOk(R"(["chat:leave",{"conversationId":"conv-123"}])");
  ASSERT_TRUE(std::holds_alternative<LeaveConversation>(leave));
  EXPECT_EQ(std::get<LeaveConversation>(leave).conversation_id, "conv-123");
}

TEST(SocketIoChatTest, RefusesMalformedEventsNamingTheirConversation) {
  EXPECT_EQ(DecodeError(R"(["chat:send",{"conversationId":"c","content":""}])").conversation_id,
            "c");
  EXPECT_EQ(DecodeError(R"(["chat:send",{"conversationId":"c","content":"x","role":"assistant"}])")
                .conversation_id,
            "c");
  EXPECT_NE(DecodeError(R"(["chat:send",{"conversationId":7,"content":"x"}])").message, "");
  EXPECT_NE(DecodeError(R"(["chat:join",{}])").message.find("conversationId"), std::string::npos);
  EXPECT_NE(DecodeError(R"(["chat:leave",{"conversationId":""}])").message, "");
  EXPECT_NE(DecodeError(R"(["chat:typing",{"conversationId":"c","isTyping":"yes"}])").message, "");
  EXPECT_NE(DecodeError(R"(["chat:send"])").message, "");
  EXPECT_NE(DecodeError(R"(["chat:send","text"])").message, "");
  const ChatEventError unknown = DecodeError(R"(["chat:delete",{"conversationId":"c"}])");
  EXPECT_EQ(unknown.conversation_id, "c");
  EXPECT_NE(unknown.message.find("chat:delete"), std::string::npos);
}

TEST(SocketIoChatTest, TheServerEventsHaveTheSeedsFields) {
  EXPECT_EQ(json::value(
                MessageEvent({"m1", "Hi", "user", "conv-123", "2026-12-01T21:30:00.000Z"}).payload),
            json::parse(R"({"conversationId":"conv-123","message":{"id":"m1","content":"Hi",
                "role":"user","conversationId":"conv-123","createdAt":"2026-12-01T21:30:00.000Z"}})"));
  EXPECT_EQ(json::value(ThinkingEvent("c").payload),
            json::parse(R"({"conversationId":"c","status":"processing"})"));
  EXPECT_EQ(
      json::value(StreamingEvent("c", "m2", "Hel", false).payload),
      json::parse(R"({"conversationId":"c","messageId":"m2","chunk":"Hel","isComplete":false})"));
  EXPECT_EQ(json::value(StreamingEvent("c", "m2", "", true).payload),
            json::parse(R"({"conversationId":"c","messageId":"m2","chunk":"","isComplete":true})"));
  EXPECT_EQ(json::value(CompleteEvent("c", "m2").payload),
            json::parse(R"({"conversationId":"c","messageId":"m2"})"));
  EXPECT_EQ(json::value(ChatErrorEvent("c", "boom").payload),
            json::parse(R"({"conversationId":"c","error":"boom"})"));
  EXPECT_EQ(json::value(JoinedEvent("c").payload), json::parse(R"({"conversationId":"c"})"));
  EXPECT_EQ(json::value(UserJoinedEvent("u1", "Alice").payload),
            json::parse(R"({"userId":"u1","username":"Alice"})"));
  EXPECT_EQ(json::value(UserLeftEvent("u1", "Alice").payload),
            json::parse(R"({"userId":"u1","username":"Alice"})"));
  EXPECT_EQ(json::value(UserTypingEvent("u1", "Alice", true).payload),
            json::parse(R"({"userId":"u1","username":"Alice","isTyping":true})"));
}

TEST(SocketIoChatTest, EventsAndAcksGoToTheChatNamespace) {
  EXPECT_EQ(Encode(EventPacket(JoinedEvent("conv-123"))),
            R"(2/chat,["chat:joined",{"conversationId":"conv-123"}])");
  EXPECT_EQ(Encode(AckPacket(0, AckOk("m1"))), R"(3/chat,0[{"ok":true,"messageId":"m1"}])");
  EXPECT_EQ(Encode(AckPacket(12, AckError("Rate limit exceeded"))),
            R"(3/chat,12[{"ok":false,"error":"Rate limit exceeded"}])");
}

TEST(SocketIoChatTest, ConnectIsAnsweredWithTheSidOrRefusedWithAMessage) {
  EXPECT_EQ(Encode(ConnectPacket("/chat", "wZX3oN0bSVIhsaknAAAI")),
            R"(0/chat,{"sid":"wZX3oN0bSVIhsaknAAAI"})");
  EXPECT_EQ(Encode(ConnectErrorPacket("/chat", "invalid token")),
            R"(4/chat,{"message":"invalid token"})");
  EXPECT_EQ(Encode(ConnectErrorPacket("/admin", "Invalid namespace")),
            R"(4/admin,{"message":"Invalid namespace"})");
}

TEST(SocketIoChatTest, AnErrorsTextIsItsMessageOrItsCode) {
  EXPECT_EQ(ErrorText(ErrorEvent{ErrorCode::kRateLimited, "slow down"}), "slow down");
  EXPECT_EQ(ErrorText(ErrorEvent{ErrorCode::kNotFound, ""}), "not_found");
}

}  // namespace
}  // namespace parley::edge::socket_io
