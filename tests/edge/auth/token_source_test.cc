#include "edge/auth/token_source.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>

namespace parley::edge {
namespace {

constexpr char kToken[] = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln-_";

TEST(TokenSourceTest, ReadsAuthorizationBearer) {
  ExtractedToken got = ExtractToken("/ws/chat", std::string("Bearer ") + kToken, "");
  EXPECT_EQ(got.location, TokenLocation::kAuthorizationHeader);
  EXPECT_EQ(got.token, kToken);
  // The scheme is case-insensitive and extra spaces are tolerated.
  EXPECT_EQ(ExtractToken("/", std::string("  bearer   ") + kToken + " ", "").token, kToken);
  // Other schemes carry no bearer token.
  EXPECT_EQ(ExtractToken("/", "Basic dXNlcjpwYXNz", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/", "Bearer", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/", "Bearertoken", "").location, TokenLocation::kNone);
}

TEST(TokenSourceTest, ReadsSubprotocolOffer) {
  ExtractedToken got = ExtractToken("/ws/chat", "", std::string("parley.v1, bearer.") + kToken);
  EXPECT_EQ(got.location, TokenLocation::kSubprotocol);
  EXPECT_EQ(got.token, kToken);
  EXPECT_EQ(ExtractToken("/", "", std::string("bearer.") + kToken + ",parley.v1").token, kToken);
  EXPECT_EQ(ExtractToken("/", "", "parley.v1").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/", "", "parley.v1, bearer.").location, TokenLocation::kNone);
}

TEST(TokenSourceTest, ReadsQueryParameter) {
  ExtractedToken got = ExtractToken(std::string("/copilot?userId=7&token=") + kToken, "", "");
  EXPECT_EQ(got.location, TokenLocation::kQueryParameter);
  EXPECT_EQ(got.token, kToken);
  EXPECT_EQ(ExtractToken("/ws?token=a%2Eb%2ec&x=1", "", "").token, "a.b.c");
  EXPECT_EQ(ExtractToken("/ws?token=abc#frag", "", "").token, "abc");
  EXPECT_EQ(ExtractToken("/ws?token=bad%zz", "", "").token, "bad%zz");
  EXPECT_EQ(ExtractToken("/ws?tokens=abc&xtoken=def", "", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/ws?token=", "", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/ws/chat", "", "").location, TokenLocation::kNone);
}

TEST(TokenSourceTest, NullAndUndefinedAreNoToken) {
  // What `?token=${token}` and `Bearer ${token}` give before a login.
  EXPECT_EQ(ExtractToken("/copilot?userId=u&token=null", "", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/copilot?token=undefined", "", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/", "Bearer null", "").location, TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/", "", "bearer.undefined").location, TokenLocation::kNone);
  // A placeholder in one place does not hide a token in the next.
  EXPECT_EQ(ExtractToken("/ws?token=q", "Bearer undefined", "").token, "q");
  EXPECT_EQ(ExtractToken("/ws?token=nullable", "", "").token, "nullable");
}

TEST(TokenSourceTest, HeaderWinsOverSubprotocolWinsOverQuery) {
  EXPECT_EQ(ExtractToken("/ws?token=q", "Bearer h", "parley.v1, bearer.s").token, "h");
  EXPECT_EQ(ExtractToken("/ws?token=q", "", "parley.v1, bearer.s").token, "s");
  EXPECT_EQ(ExtractToken("/ws?token=q", "Basic x", "parley.v1").token, "q");
}

TEST(TokenSourceTest, ReadsBeastRequest) {
  namespace http = boost::beast::http;
  http::request<http::string_body> request{http::verb::get, "/ws/chat?token=q", 11};
  EXPECT_EQ(ExtractToken(request).token, "q");
  request.insert(http::field::sec_websocket_protocol, "parley.v1");
  request.insert(http::field::sec_websocket_protocol, std::string("bearer.") + kToken);
  ExtractedToken got = ExtractToken(request);
  EXPECT_EQ(got.location, TokenLocation::kSubprotocol);
  EXPECT_EQ(got.token, kToken);
  request.set(http::field::authorization, "Bearer h");
  EXPECT_EQ(ExtractToken(request).token, "h");
}

TEST(TokenSourceTest, FindsTheDialectSubprotocolAmongTheOfferedOnes) {
  EXPECT_TRUE(OffersSubprotocol(std::string("parley.v1, bearer.") + kToken, "parley.v1"));
  EXPECT_TRUE(OffersSubprotocol(std::string("bearer.") + kToken + " , parley.v1", "parley.v1"));
  EXPECT_FALSE(OffersSubprotocol(std::string("bearer.") + kToken, "parley.v1"));
  EXPECT_FALSE(OffersSubprotocol("chat, parley.v2", "parley.v1"));
  EXPECT_FALSE(OffersSubprotocol("", "parley.v1"));
}

TEST(TokenSourceTest, LooksOnlyInThePlacesTheDialectAllows) {
  TokenPlaces header_only;
  header_only.subprotocol = false;
  header_only.query_parameter = false;
  EXPECT_EQ(ExtractToken("/p?token=q", "", std::string("bearer.") + kToken, header_only).location,
            TokenLocation::kNone);
  EXPECT_EQ(ExtractToken("/p?token=q", "Bearer h", "", header_only).token, "h");
  TokenPlaces query_only;
  query_only.authorization_header = false;
  query_only.subprotocol = false;
  EXPECT_EQ(ExtractToken("/p?token=q", "Bearer h", "", query_only).token, "q");
}

}  // namespace
}  // namespace parley::edge
