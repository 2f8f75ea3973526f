#include "edge/auth/base64url.h"

#include <gtest/gtest.h>

namespace parley::edge {
namespace {

TEST(Base64UrlTest, EncodesRfc4648VectorsWithoutPadding) {
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff\xfe"), "-__-");
}

TEST(Base64UrlTest, RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 70; ++i) {
    std::optional<std::string> decoded = Base64UrlDecode(Base64UrlEncode(bytes));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, bytes);
    bytes.push_back(static_cast<char>(i * 37));
  }
}

TEST(Base64UrlTest, RefusesWhatCompactJwsForbids) {
  EXPECT_EQ(Base64UrlDecode("Zg=="), std::nullopt);  // padding
  EXPECT_EQ(Base64UrlDecode("+/+/"), std::nullopt);  // standard alphabet
  EXPECT_EQ(Base64UrlDecode("Zm 9v"), std::nullopt);
  EXPECT_EQ(Base64UrlDecode("Z"), std::nullopt);    // impossible length
  EXPECT_EQ(Base64UrlDecode("Zh"), std::nullopt);   // non-zero trailing bits ("Zg" is canonical)
  EXPECT_EQ(Base64UrlDecode("Zm9"), std::nullopt);  // same, two-byte tail ("Zm8")
  EXPECT_EQ(Base64UrlDecode("-__-"), std::optional<std::string>("\xfb\xff\xfe"));
}

}  // namespace
}  // namespace parley::edge
