#include "edge/limits/origin_allow_list.h"

#include <gtest/gtest.h>

namespace parley::edge {
namespace {

OriginAllowList MustParse(std::string_view entries) {
  absl::StatusOr<OriginAllowList> list = OriginAllowList::Parse(entries);
  EXPECT_TRUE(list.ok()) << list.status();
  return list.ok() ? *std::move(list) : OriginAllowList();
}

TEST(OriginAllowListTest, EmptyListAllowsEverything) {
  OriginAllowList list = MustParse("");
  EXPECT_TRUE(list.empty());
  EXPECT_TRUE(list.Allows("https://anywhere.example"));
  EXPECT_TRUE(list.Allows("null"));
  EXPECT_TRUE(list.Allows(std::nullopt));
  EXPECT_TRUE(MustParse(" , ").empty());
}

TEST(OriginAllowListTest, MatchesExactOrigins) {
  OriginAllowList list = MustParse("https://chat.example.com, http://localhost:3000");
  EXPECT_FALSE(list.empty());
  EXPECT_TRUE(list.Allows("https://chat.example.com"));
  EXPECT_TRUE(list.Allows("HTTPS://Chat.Example.COM"));
  EXPECT_TRUE(list.Allows("https://chat.example.com:443"));  // the default port, spelled out
  EXPECT_TRUE(list.Allows("http://localhost:3000"));
  EXPECT_FALSE(list.Allows("http://chat.example.com"));  // scheme matters
  EXPECT_FALSE(list.Allows("https://chat.example.com:8443"));
  EXPECT_FALSE(list.Allows("http://localhost:3001"));
  EXPECT_FALSE(list.Allows("http://localhost"));
  EXPECT_FALSE(list.Allows("https://chat.example.com.evil.net"));
  EXPECT_FALSE(list.Allows("https://evilchat.example.com"));
  EXPECT_FALSE(list.Allows("null"));
  EXPECT_FALSE(list.Allows("garbage"));
  EXPECT_FALSE(list.Allows(""));
}

TEST(OriginAllowListTest, MatchesWildcardSubdomains) {
  OriginAllowList list = MustParse("https://*.example.com");
  EXPECT_TRUE(list.Allows("https://app.example.com"));
  EXPECT_TRUE(list.Allows("https://a.b.example.com"));
  EXPECT_FALSE(list.Allows("https://example.com"));
  EXPECT_FALSE(list.Allows("https://badexample.com"));
  EXPECT_FALSE(list.Allows("https://example.com.evil.net"));
  EXPECT_FALSE(list.Allows("http://app.example.com"));
  EXPECT_FALSE(list.Allows("https://app.example.com:444"));
}

TEST(OriginAllowListTest, MissingOriginIsANonBrowserClientAndAllowed) {
  OriginAllowList list = MustParse("https://chat.example.com");
  EXPECT_TRUE(list.Allows(std::nullopt));
}

TEST(OriginAllowListTest, StarAndNullEntries) {
  EXPECT_TRUE(MustParse("*").Allows("https://anything.example"));
  OriginAllowList with_null = MustParse("null,https://chat.example.com/");
  EXPECT_TRUE(with_null.Allows("null"));
  EXPECT_TRUE(with_null.Allows("https://chat.example.com"));
}

TEST(OriginAllowListTest, Ipv6Origins) {
  OriginAllowList list = MustParse("http://[::1]:8080");
  EXPECT_TRUE(list.Allows("http://[::1]:8080"));
  EXPECT_FALSE(list.Allows("http://[::1]:8081"));
}

TEST(OriginAllowListTest, RefusesMalformedEntries) {
  for (std::string_view bad :
       {"example.com", "https://", "https://*", "https://a.*.com", "https://example.com/path",
        "https://example.com:99999", "https://exa mple.com", "://example.com"}) {
    EXPECT_FALSE(OriginAllowList::Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace parley::edge
