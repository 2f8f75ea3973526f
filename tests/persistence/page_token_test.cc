#include "persistence/stores/page_token.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace parley::persistence {
namespace {

TEST(PageTokenTest, ReadsBackWhatItWrote) {
  const std::string token = EncodePageToken("c", 1700000000000, 6);
  int64_t a = 0;
  int64_t b = 0;
  ASSERT_TRUE(DecodePageToken(token, "c", &a, &b).ok());
  EXPECT_EQ(a, 1700000000000);
  EXPECT_EQ(b, 6);
}

TEST(PageTokenTest, RefusesTokensItDidNotMake) {
  int64_t a = 0;
  int64_t b = 0;
  for (const std::string& plain :
       {std::string("m:1:2"), std::string("c:-1:2"), std::string("c:1"), std::string("c:1:2:3"),
        std::string("c:99999999999999999999:0"), std::string("")}) {
    EXPECT_FALSE(DecodePageToken(absl::WebSafeBase64Escape(plain), "c", &a, &b).ok()) << plain;
  }
  // Not base64url at all, and a token of the right kind for another listing.
  EXPECT_FALSE(DecodePageToken("%%%", "c", &a, &b).ok());
  EXPECT_FALSE(DecodePageToken(EncodePageToken("p", 1, 0), "m", &a, &b).ok());
  EXPECT_TRUE(
      DecodePageToken(EncodePageToken("m", std::numeric_limits<int64_t>::max(), 0), "m", &a, &b)
          .ok());
}

}  // namespace
}  // namespace parley::persistence
