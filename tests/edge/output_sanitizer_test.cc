#include "edge/protocol/output_sanitizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace parley::edge {
namespace {

// What a client receives when the reply arrives in `pieces`.
std::string Received(const std::vector<std::string>& pieces) {
  OutputSanitizer sanitizer;
  std::string out;
  for (const std::string& piece : pieces) {
    out += sanitizer.Feed(piece);
  }
  return out + sanitizer.Finish();
}

TEST(OutputSanitizerTest, ReplacesEveryScriptOpeningInAnyCase) {
  EXPECT_EQ(SanitizeScriptTags("a<script>b</script><SCRIPT src=x><ScRiPt"),
            "a&lt;script>b</script>&lt;script src=x>&lt;script");
  EXPECT_EQ(SanitizeScriptTags("<<script"), "<&lt;script");
  EXPECT_EQ(SanitizeScriptTags("no tags, a < b, <scrip"), "no tags, a < b, <scrip");
  EXPECT_EQ(SanitizeScriptTags("<style><scripts"), "<style>&lt;scripts");
}

TEST(OutputSanitizerTest, CatchesAnOpeningSplitAcrossTwoChunks) {
  EXPECT_EQ(Received({"Look: <scr", "ipt>alert(1)</script>"}),
            "Look: &lt;script>alert(1)</script>");
  EXPECT_EQ(Received({"<", "S", "c", "R", "i", "P", "t"}), "&lt;script");
}

TEST(OutputSanitizerTest, HoldsBackOnlyAPossibleOpening) {
  OutputSanitizer sanitizer;
  EXPECT_EQ(sanitizer.Feed("Hello <scr"), "Hello ");
  EXPECT_EQ(sanitizer.Feed("eam"), "<scream");
  EXPECT_EQ(sanitizer.Feed("a <b> c"), "a <b> c");
  EXPECT_EQ(sanitizer.Feed(" x<"), " x");
  EXPECT_EQ(sanitizer.Finish(), "<");
  EXPECT_EQ(sanitizer.Finish(), "");
}

TEST(OutputSanitizerTest, ReleasesAnUnfinishedOpeningAtTheEnd) {
  EXPECT_EQ(Received({"ends with <scrip"}), "ends with <scrip");
}

TEST(OutputSanitizerTest, EverySplitOfATextGivesTheWholeTextSanitised) {
  const std::string text = "x<script>1</script> <SCRIPT>, <scr <scRIpt é ☃ <";
  const std::string expected = SanitizeScriptTags(text);
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); ++b) {
      ASSERT_EQ(Received({text.substr(0, a), text.substr(a, b - a), text.substr(b)}), expected)
          << "split at " << a << " and " << b;
    }
  }
}

}  // namespace
}  // namespace parley::edge
