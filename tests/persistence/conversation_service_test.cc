#include "persistence/conversation_service.h"

#include <string>

#include "gtest/gtest.h"

namespace parley::persistence {
namespace {

// Over gRPC protobuf already refuses a string field that is not UTF-8, so these
// bytes reach the check only from callers inside the process.
TEST(ClientConversationIdTest, MalformedUtf8IsInvalid) {
  for (const std::string& bad : {
           std::string("\xff"),               // never a UTF-8 byte
           std::string("a\x80z"),             // a continuation byte with no lead
           std::string("\xe2\x82"),           // cut short
           std::string("\xc0\xaf"),           // overlong '/'
           std::string("\xe0\x80\xaf"),       // overlong '/', three bytes
           std::string("\xed\xa0\x80"),       // a UTF-16 surrogate
           std::string("\xf4\x90\x80\x80"),   // past U+10FFFF
           std::string("conv-\xc3\x28-123"),  // lead byte followed by ASCII
       }) {
    absl::Status status = CheckClientConversationId(bad, "client_conversation_id");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), "client_conversation_id is not valid UTF-8");
  }
}

TEST(ClientConversationIdTest, ControlCharactersAreInvalidEverythingElseIsNot) {
  for (const std::string& control : {std::string("\x01"), std::string("a\x1f"), std::string("\x7f"),
                                     std::string("\xc2\x80"), std::string("\xc2\x9f")}) {
    EXPECT_EQ(CheckClientConversationId(control, "id").message(),
              "id contains a control character");
  }
  for (const std::string& good :
       {std::string("conv-123"), std::string(" spaced out "), std::string("\xc2\xa0nbsp"),
        std::string("\xe2\x80\xa8"), std::string("\xef\xbf\xbf"), std::string("\xf4\x8f\xbf\xbf"),
        std::string("日本語の会話"), std::string(kMaxIdBytes, 'x')}) {
    EXPECT_TRUE(CheckClientConversationId(good, "id").ok()) << good;
  }
  EXPECT_EQ(CheckClientConversationId("", "id").message(), "id must not be empty");
  EXPECT_EQ(CheckClientConversationId(std::string(kMaxIdBytes + 1, 'x'), "id").message(),
            "id is longer than 128 bytes");
  // Multi-byte characters count in bytes: 43 three-byte characters are 129 bytes.
  std::string long_text;
  for (int i = 0; i < 43; ++i) {
    long_text += "会";
  }
  EXPECT_EQ(CheckClientConversationId(long_text, "id").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace parley::persistence
