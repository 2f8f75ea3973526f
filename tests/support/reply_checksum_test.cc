#include "tests/support/reply_checksum.h"

#include <string>

#include "boost/json/object.hpp"
#include "gtest/gtest.h"

namespace parley::testing {
namespace {

TEST(ReplyChecksumTest, MatchesAKnownDigest) {
  // From sha256sum.
  EXPECT_EQ(IndependentSha256("Hello, world"),
            "4ae7c3b6ac0beff671efa8cf57386151c06e58ca53a78d83f36107316cec125f");
}

TEST(ReplyChecksumTest, TheCheckFailsIfOneByteOfTheReassembledTextDiffers) {
  const std::string text = "Grüße, world: a reply of several tokens.";
  const boost::json::object end{{"type", "stream_complete"}, {"sha256", IndependentSha256(text)}};
  EXPECT_TRUE(VerifyReplyChecksum(text, end).ok());
  for (size_t i = 0; i < text.size(); ++i) {
    std::string changed = text;
    changed[i] = static_cast<char>(changed[i] ^ 0x01);
    EXPECT_FALSE(VerifyReplyChecksum(changed, end).ok()) << "byte " << i;
  }
  EXPECT_FALSE(VerifyReplyChecksum(text + " ", end).ok()) << "one byte more";
  EXPECT_FALSE(VerifyReplyChecksum(text.substr(1), end).ok()) << "one byte less";
  EXPECT_FALSE(VerifyReplyChecksum(text, boost::json::object{{"type", "stream_complete"}}).ok())
      << "no checksum proves nothing";
}

}  // namespace
}  // namespace parley::testing
