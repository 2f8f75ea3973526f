#include "edge/protocol/native_codec.h"

#include <string>
#include <variant>

#include "gtest/gtest.h"

namespace parley::edge {
namespace {

class NativeCodecTest : public ::testing::Test {
 protected:
  Command DecodeOk(const std::string& frame) {
    std::variant<Command, ErrorEvent> decoded = codec_.Decode(frame);
    if (const ErrorEvent* error = std::get_if<ErrorEvent>(&decoded)) {
      ADD_FAILURE() << frame << " -> " << ErrorCodeName(error->code) << ": " << error->message;
      return Ping{};
    }
    return std::get<Command>(decoded);
  }

  ErrorEvent DecodeError(const std::string& frame) {
    std::variant<Command, ErrorEvent> decoded = codec_.Decode(frame);
    if (!std::holds_alternative<ErrorEvent>(decoded)) {
      ADD_FAILURE() << frame << " decoded without error";
      return {};
    }
    return std::get<ErrorEvent>(decoded);
  }

  NativeCodec codec_;
};

TEST_F(NativeCodecTest, DecodesAMessageWithEveryField) {
  const Command command = DecodeOk(
      R"({"type":"message","id":"c1","conversationId":"conv","content":"Hi ☃","model":"m"})");
  const SendMessage* message = std::get_if<SendMessage>(&command);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->id, "c1");
  EXPECT_EQ(message->conversation_id, "conv");
  EXPECT_EQ(message->content, "Hi ☃");
  EXPECT_EQ(message->model, "m");
}

TEST_F(NativeCodecTest, DecodesAMessageWithOnlyTheRequiredFields) {
  const Command command =
      DecodeOk(R"({"type":"message","id":"c1","content":"x","conversationId":null,"extra":1})");
  const SendMessage* message = std::get_if<SendMessage>(&command);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->conversation_id, "");
  EXPECT_EQ(message->model, "");
}

TEST_F(NativeCodecTest, DecodesPingAndHistory) {
  EXPECT_TRUE(std::holds_alternative<Ping>(DecodeOk(R"({"type":"ping"})")));
  const Command command = DecodeOk(R"({"type":"history","conversationId":"conv"})");
  const GetHistory* history = std::get_if<GetHistory>(&command);
  ASSERT_NE(history, nullptr);
  EXPECT_EQ(history->conversation_id, "conv");
}

TEST_F(NativeCodecTest, HistoryWithoutAConversationListsConversations) {
  const Command command = DecodeOk(R"({"type":"history","pageSize":5,"pageToken":"t"})");
  const ListConversations* list = std::get_if<ListConversations>(&command);
  ASSERT_NE(list, nullptr);
  EXPECT_EQ(list->page_size, 5);
  EXPECT_EQ(list->page_token, "t");
  EXPECT_TRUE(std::holds_alternative<ListConversations>(DecodeOk(R"({"type":"history"})")));
}

TEST_F(NativeCodecTest, DecodesMessagesRegenerateAndEdit) {
  Command command =
      DecodeOk(R"({"type":"messages","conversationId":"c","pageSize":2,"leafMessageId":"m9"})");
  const ListMessages* list = std::get_if<ListMessages>(&command);
  ASSERT_NE(list, nullptr);
  EXPECT_EQ(list->conversation_id, "c");
  EXPECT_EQ(list->page_size, 2);
  EXPECT_EQ(list->leaf_message_id, "m9");

  command = DecodeOk(R"({"type":"regenerate","id":"r1","messageId":"m2","model":"big"})");
  const RegenerateReply* regenerate = std::get_if<RegenerateReply>(&command);
  ASSERT_NE(regenerate, nullptr);
  EXPECT_EQ(regenerate->id, "r1");
  EXPECT_EQ(regenerate->message_id, "m2");
  EXPECT_EQ(regenerate->model, "big");

  command = DecodeOk(R"({"type":"edit","id":"e1","messageId":"m1","content":"better"})");
  const EditMessage* edit = std::get_if<EditMessage>(&command);
  ASSERT_NE(edit, nullptr);
  EXPECT_EQ(edit->message_id, "m1");
  EXPECT_EQ(edit->content, "better");
}

TEST_F(NativeCodecTest, DecodesJoinLeaveAndTyping) {
  Command command = DecodeOk(R"({"type":"join","conversationId":"c"})");
  ASSERT_TRUE(std::holds_alternative<JoinConversation>(command));
  EXPECT_EQ(std::get<JoinConversation>(command).conversation_id, "c");
  command = DecodeOk(R"({"type":"leave","conversationId":"c"})");
  ASSERT_TRUE(std::holds_alternative<LeaveConversation>(command));
  command = DecodeOk(R"({"type":"typing","conversationId":"c"})");
  ASSERT_TRUE(std::holds_alternative<Typing>(command));
  EXPECT_TRUE(std::get<Typing>(command).is_typing);
  command = DecodeOk(R"({"type":"typing","conversationId":"c","isTyping":false})");
  EXPECT_FALSE(std::get<Typing>(command).is_typing);
}

TEST_F(NativeCodecTest, EncodesPagesAndRoomEvents) {
  EXPECT_EQ(codec_.Encode(ConversationPage{
                {{"c1", "Trip", "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"}}, "next"}),
            R"({"type":"history","conversations":[{"id":"c1","title":"Trip",)"
            R"("createdAt":"2026-01-01T00:00:00.000Z","updatedAt":"2026-01-02T00:00:00.000Z"}],)"
            R"("nextPageToken":"next"})");
  EXPECT_EQ(codec_.Encode(MessagePage{"c1", {}, ""}),
            R"({"type":"messages","conversationId":"c1","messages":[],"nextPageToken":""})");
  EXPECT_EQ(codec_.Encode(Joined{"c1"}), R"({"type":"joined","conversationId":"c1"})");
  EXPECT_EQ(codec_.Encode(Left{"c1"}), R"({"type":"left","conversationId":"c1"})");
  EXPECT_EQ(
      codec_.Encode(MessageAdded{
          "c1", {"m3", "user", "hi", "complete", "m2", "", "", 0, "2026-01-01T00:00:00.000Z"}}),
      R"({"type":"message_added","conversationId":"c1","message":{"id":"m3",)"
      R"("parentId":"m2","role":"user","content":"hi","status":"complete","model":"",)"
      R"("finishReason":"","lastSeq":0,"createdAt":"2026-01-01T00:00:00.000Z"}})");
  EXPECT_EQ(codec_.Encode(StreamReasoning{"m2", "Let me think."}),
            R"({"type":"stream_reasoning","messageId":"m2","text":"Let me think."})");
  EXPECT_EQ(codec_.Encode(TypingRelay{"c1", false}),
            R"({"type":"typing","conversationId":"c1","isTyping":false})");
}

TEST_F(NativeCodecTest, AConversationAClientNamedCarriesItsName) {
  EXPECT_EQ(codec_.Encode(ConversationPage{{{"c1", "Trip", "2026-01-01T00:00:00.000Z",
                                             "2026-01-02T00:00:00.000Z", "conv-123"}},
                                           ""}),
            R"({"type":"history","conversations":[{"id":"c1","title":"Trip",)"
            R"("createdAt":"2026-01-01T00:00:00.000Z","updatedAt":"2026-01-02T00:00:00.000Z",)"
            R"("clientConversationId":"conv-123"}],"nextPageToken":""})");
}

TEST_F(NativeCodecTest, NamesCommandsForMetrics) {
  EXPECT_EQ(CommandName(DecodeOk(R"({"type":"ping"})")), "ping");
  EXPECT_EQ(CommandName(DecodeOk(R"({"type":"message","id":"a","content":"b"})")), "message");
  EXPECT_EQ(CommandName(DecodeOk(R"({"type":"history","conversationId":"c"})")), "history");
}

TEST_F(NativeCodecTest, RejectsWhatIsNotJson) {
  for (const std::string frame : {"", "{", "not json", R"({"type":"ping"} trailing)"}) {
    EXPECT_EQ(DecodeError(frame).code, ErrorCode::kInvalidJson) << frame;
  }
}

TEST_F(NativeCodecTest, RejectsJsonThatIsNotAFrame) {
  for (const std::string frame : {"[]", "42", R"("ping")", "{}", R"({"type":7})"}) {
    EXPECT_EQ(DecodeError(frame).code, ErrorCode::kInvalidFrame) << frame;
  }
}

TEST_F(NativeCodecTest, RejectsUnknownTypesAndEchoesTheId) {
  const ErrorEvent error = DecodeError(R"({"type":"teleport","id":"c9"})");
  EXPECT_EQ(error.code, ErrorCode::kUnknownType);
  EXPECT_EQ(error.id, "c9");
  EXPECT_NE(error.message.find("teleport"), std::string::npos);
}

TEST_F(NativeCodecTest, RejectsMessagesWithMissingOrMistypedFields) {
  const struct {
    std::string frame;
    std::string id;
  } cases[] = {
      {R"({"type":"message","content":"x"})", ""},
      {R"({"type":"message","id":"","content":"x"})", ""},
      {R"({"type":"message","id":5,"content":"x"})", ""},
      {R"({"type":"message","id":"c1"})", "c1"},
      {R"({"type":"message","id":"c1","content":""})", "c1"},
      {R"({"type":"message","id":"c1","content":["x"]})", "c1"},
      {R"({"type":"message","id":"c1","content":"x","conversationId":3})", "c1"},
      {R"({"type":"message","id":"c1","content":"x","model":{}})", "c1"},
      {R"({"type":"message","id":"c1","content":"x","parentId":"m1"})", "c1"},
      {R"({"type":"message","id":"c1","content":"x","conversationId":"c","parentId":2})", "c1"},
      {R"({"type":"history","conversationId":7})", ""},
      {R"({"type":"history","pageSize":-1})", ""},
      {R"({"type":"messages"})", ""},
      {R"({"type":"messages","conversationId":"c","pageToken":1})", ""},
      {R"({"type":"regenerate","messageId":"m"})", ""},
      {R"({"type":"regenerate","id":"r1"})", "r1"},
      {R"({"type":"edit","id":"e1","messageId":"m"})", "e1"},
      {R"({"type":"edit","id":"e1","content":"x"})", "e1"},
      {R"({"type":"join"})", ""},
      {R"({"type":"leave","conversationId":""})", ""},
      {R"({"type":"typing"})", ""},
      {R"({"type":"typing","conversationId":"c","isTyping":"yes"})", ""},
  };
  for (const auto& c : cases) {
    const ErrorEvent error = DecodeError(c.frame);
    EXPECT_EQ(error.code, ErrorCode::kInvalidFrame) << c.frame;
    EXPECT_EQ(error.id, c.id) << c.frame;
    EXPECT_FALSE(error.message.empty());
  }
}

TEST_F(NativeCodecTest, EncodesEveryEventExactly) {
  EXPECT_EQ(codec_.Encode(Ack{"c1", "conv", "m1"}),
            R"({"type":"ack","id":"c1","conversationId":"conv","messageId":"m1"})");
  EXPECT_EQ(codec_.Encode(StreamStart{"conv", "m2", "sim"}),
            R"({"type":"stream_start","conversationId":"conv","messageId":"m2","model":"sim"})");
  EXPECT_EQ(codec_.Encode(StreamToken{"m2", 1, "Hel\"lo\n"}),
            R"({"type":"stream_token","messageId":"m2","seq":1,"token":"Hel\"lo\n"})");
  EXPECT_EQ(codec_.Encode(StreamComplete{"m2", 7, "stop", 12, 7}),
            R"({"type":"stream_complete","messageId":"m2","lastSeq":7,"finishReason":"stop",)"
            R"("usage":{"promptTokens":12,"completionTokens":7}})");
  EXPECT_EQ(codec_.Encode(ErrorEvent{ErrorCode::kInvalidJson, "frame is not valid JSON", ""}),
            R"({"type":"error","code":"invalid_json","message":"frame is not valid JSON"})");
  EXPECT_EQ(codec_.Encode(ErrorEvent{ErrorCode::kStorageUnavailable, "down", "c1"}),
            R"({"type":"error","code":"storage_unavailable","message":"down","id":"c1"})");
  EXPECT_EQ(codec_.Encode(Pong{}), R"({"type":"pong"})");
  EXPECT_EQ(codec_.Encode(History{
                "conv",
                {{"m1", "user", "hi", "complete", "", "", "", 0, "2026-01-02T03:04:05.006Z"},
                 {"m2", "assistant", "hello", "streaming", "m1", "sim", "", 3,
                  "2026-01-02T03:04:06.000Z"}}}),
            R"({"type":"history","conversationId":"conv","messages":[)"
            R"({"id":"m1","parentId":"","role":"user","content":"hi","status":"complete",)"
            R"("model":"","finishReason":"","lastSeq":0,"createdAt":"2026-01-02T03:04:05.006Z"},)"
            R"({"id":"m2","parentId":"m1","role":"assistant","content":"hello",)"
            R"("status":"streaming","model":"sim","finishReason":"","lastSeq":3,)"
            R"("createdAt":"2026-01-02T03:04:06.000Z"}]})");
  EXPECT_EQ(codec_.Encode(History{"conv", {}}),
            R"({"type":"history","conversationId":"conv","messages":[]})");
}

TEST_F(NativeCodecTest, EveryErrorCodeHasAStableName) {
  EXPECT_EQ(ErrorCodeName(ErrorCode::kInvalidJson), "invalid_json");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kInvalidFrame), "invalid_frame");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kUnknownType), "unknown_type");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNotFound), "not_found");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kInferenceUnavailable), "inference_unavailable");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kStorageUnavailable), "storage_unavailable");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kShuttingDown), "shutting_down");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kInternal), "internal");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kRateLimited), "rate_limited");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kTooManyTurns), "too_many_turns");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kUnauthenticated), "unauthenticated");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kTokenExpired), "token_expired");
}

TEST_F(NativeCodecTest, DecodesAuthAndEncodesItsAnswer) {
  const Command command = DecodeOk(R"({"type":"auth","token":"a.b.c"})");
  const RenewToken* renew = std::get_if<RenewToken>(&command);
  ASSERT_NE(renew, nullptr);
  EXPECT_EQ(renew->token, "a.b.c");
  EXPECT_EQ(CommandName(command), "auth");
  for (const std::string frame :
       {R"({"type":"auth"})", R"({"type":"auth","token":""})", R"({"type":"auth","token":7})"}) {
    EXPECT_EQ(DecodeError(frame).code, ErrorCode::kInvalidFrame) << frame;
  }
  EXPECT_EQ(codec_.Encode(TokenRenewed{"2026-12-02T01:30:00.000Z"}),
            R"({"type":"authenticated","expiresAt":"2026-12-02T01:30:00.000Z"})");
  EXPECT_EQ(codec_.Encode(ErrorEvent{ErrorCode::kTokenExpired, "expired", ""}),
            R"({"type":"error","code":"token_expired","message":"expired"})");
}

TEST_F(NativeCodecTest, DecodesCancelAndResume) {
  const Command cancel = DecodeOk(R"({"type":"cancel","messageId":"m2"})");
  ASSERT_NE(std::get_if<CancelTurn>(&cancel), nullptr);
  EXPECT_EQ(std::get<CancelTurn>(cancel).message_id, "m2");
  const Command resume = DecodeOk(R"({"type":"resume","messageId":"m2","lastSeq":5})");
  ASSERT_NE(std::get_if<ResumeStream>(&resume), nullptr);
  EXPECT_EQ(std::get<ResumeStream>(resume).message_id, "m2");
  EXPECT_EQ(std::get<ResumeStream>(resume).last_seq, 5);
  EXPECT_EQ(std::get<ResumeStream>(DecodeOk(R"({"type":"resume","messageId":"m2"})")).last_seq, 0);

  EXPECT_EQ(DecodeError(R"({"type":"cancel"})").code, ErrorCode::kInvalidFrame);
  EXPECT_EQ(DecodeError(R"({"type":"resume","messageId":"m2","lastSeq":-1})").code,
            ErrorCode::kInvalidFrame);
  EXPECT_EQ(DecodeError(R"({"type":"resume","messageId":"m2","lastSeq":"3"})").code,
            ErrorCode::kInvalidFrame);
}

TEST_F(NativeCodecTest, EncodesTheStreamEndingsAndLimitErrors) {
  EXPECT_EQ(codec_.Encode(StreamCancelled{"m2", 3}),
            R"({"type":"stream_cancelled","messageId":"m2","lastSeq":3})");
  EXPECT_EQ(codec_.Encode(StreamInterrupted{"m2", 2, "inference_unavailable", "gone", "He"}),
            R"({"type":"stream_interrupted","messageId":"m2","lastSeq":2,)"
            R"("error":"inference_unavailable","message":"gone","partialResponse":"He"})");
  EXPECT_EQ(codec_.Encode(Heartbeat{"m2"}), R"({"type":"heartbeat","messageId":"m2"})");
  EXPECT_EQ(codec_.Encode(Resumed{"m2", true}),
            R"({"type":"resumed","messageId":"m2","recovered":true})");
  EXPECT_EQ(codec_.Encode(ErrorEvent{ErrorCode::kRateLimited, "slow down", "c1", 1500}),
            R"({"type":"error","code":"rate_limited","message":"slow down","id":"c1",)"
            R"("retryAfterMs":1500})");
}

}  // namespace
}  // namespace parley::edge
