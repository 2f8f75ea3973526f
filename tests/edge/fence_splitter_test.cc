#include "edge/protocol/fence_splitter.h"

#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

using Kind = FenceSplitter::Kind;
using Piece = FenceSplitter::Piece;

// What a client makes of the pieces: runs of one kind joined, positions dropped.
struct Segment {
  Kind kind;
  std::string text;
  bool operator==(const Segment&) const = default;
};

void PrintTo(const Segment& run, std::ostream* os) {
  const char* kinds[] = {"prose", "code", "block"};
  *os << kinds[static_cast<int>(run.kind)] << "(" << ::testing::PrintToString(run.text) << ")";
}

std::vector<Segment> Segments(const std::vector<Piece>& pieces) {
  std::vector<Segment> runs;
  for (const Piece& piece : pieces) {
    if (piece.kind != Kind::kCodeBlock && !runs.empty() && runs.back().kind == piece.kind) {
      runs.back().text += piece.text;
    } else {
      runs.push_back(Segment{piece.kind, piece.text});
    }
  }
  return runs;
}

std::vector<Piece> Split(const std::vector<std::string_view>& chunks, int64_t emit_after = 0) {
  FenceSplitter splitter(emit_after);
  std::vector<Piece> pieces;
  for (std::string_view chunk : chunks) {
    for (Piece& piece : splitter.Feed(chunk)) {
      pieces.push_back(std::move(piece));
    }
  }
  for (Piece& piece : splitter.Finish()) {
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

std::vector<Segment> SplitWhole(std::string_view text) { return Segments(Split({text})); }

Segment Prose(std::string text) { return Segment{Kind::kProse, std::move(text)}; }
Segment Code(std::string text) { return Segment{Kind::kCode, std::move(text)}; }
Segment Block(std::string text) { return Segment{Kind::kCodeBlock, std::move(text)}; }

// A reply with every kind of fence in it.
constexpr std::string_view kSampleReply =
    "Here is the code:\n"
    "```python\n"
    "import pandas as pd\n"
    "df = pd.read_csv(\"x.csv\")\n"
    "```\n"
    "And after ``inline`` text.\n"
    "~~~\n"
    "tilde block with ``` inside\n"
    "~~~~\n"
    "  ```js title=\"a\"\n"
    "  const x = 1;\n"
    "    indented more\n"
    "  ```\n"
    "Done.";

TEST(FenceSplitterTest, SeparatesProseFromTheInsideOfFencedBlocks) {
  EXPECT_THAT(
      SplitWhole(kSampleReply),
      ::testing::ElementsAre(
          Prose("Here is the code:\n"), Code("import pandas as pd\ndf = pd.read_csv(\"x.csv\")\n"),
          Block("import pandas as pd\ndf = pd.read_csv(\"x.csv\")\n"),
          Prose("And after ``inline`` text.\n"), Code("tilde block with ``` inside\n"),
          Block("tilde block with ``` inside\n"), Code("const x = 1;\n  indented more\n"),
          Block("const x = 1;\n  indented more\n"), Prose("Done.")));
}

// The replies the rules below are about, for the chunking properties.
const std::vector<std::string_view>& Replies() {
  static const auto* replies = new std::vector<std::string_view>{
      kSampleReply,
      "Intro\n````\ncode ``` not closing\n```\nstill code",
      "```foo`bar\nnot code\n",
      "    ```\nprose\n",
      "```\ncode\n```   \nafter",
      "```\na\n``` x\nb\n```\n",
      "```",
      "text\n```py",
      "a\r\n```py\r\nx = 1\r\n```\r\nb",
      "~~~\n```\nnot a close\n~~~\n",
      "````\nx\n```\n````\n",
      "```\nx\n~~~\n```\n",
      "```\nx\n   ```\n",
      "```\nx\n    ```\n",
      "``\n~~ x\n",
      "text ```not fence```\n",
      "  ```\n\n   x\n  \n  ```\n",
      "```\nends on spaces\n  ",
      "```\nends on a fence\n```",
      "```\nends on a short run\n``",
      "",
  };
  return *replies;
}

TEST(FenceSplitterTest, AnUnclosedFenceClosesAtTheEnd) {
  EXPECT_THAT(
      SplitWhole("Intro\n````\ncode ``` not closing\n```\nstill code"),
      ::testing::ElementsAre(Prose("Intro\n"), Code("code ``` not closing\n```\nstill code"),
                             Block("code ``` not closing\n```\nstill code")));
  EXPECT_THAT(SplitWhole("```\nends on spaces\n  "),
              ::testing::ElementsAre(Code("ends on spaces\n  "), Block("ends on spaces\n  ")));
  EXPECT_THAT(
      SplitWhole("```\nends on a short run\n``"),
      ::testing::ElementsAre(Code("ends on a short run\n``"), Block("ends on a short run\n``")));
}

TEST(FenceSplitterTest, AClosingFenceAtTheVeryEndNeedsNoNewline) {
  EXPECT_THAT(SplitWhole("```\nends on a fence\n```"),
              ::testing::ElementsAre(Code("ends on a fence\n"), Block("ends on a fence\n")));
}

TEST(FenceSplitterTest, AReplyEndingOnAnOpeningFenceHasAnEmptyBlock) {
  EXPECT_THAT(SplitWhole("```"), ::testing::ElementsAre(Block("")));
  EXPECT_THAT(SplitWhole("text\n```py"), ::testing::ElementsAre(Prose("text\n"), Block("")));
  EXPECT_THAT(SplitWhole(""), ::testing::IsEmpty());
}

TEST(FenceSplitterTest, ABacktickInABacktickInfoStringMakesTheLineProse) {
  EXPECT_THAT(SplitWhole("```foo`bar\nnot code\n"),
              ::testing::ElementsAre(Prose("```foo`bar\nnot code\n")));
  EXPECT_THAT(SplitWhole("text ```not fence```\n"),
              ::testing::ElementsAre(Prose("text ```not fence```\n")));
}

TEST(FenceSplitterTest, FencesAreIndentedByAtMostThreeSpaces) {
  EXPECT_THAT(SplitWhole("    ```\nprose\n"), ::testing::ElementsAre(Prose("    ```\nprose\n")));
  EXPECT_THAT(SplitWhole("```\nx\n   ```\n"), ::testing::ElementsAre(Code("x\n"), Block("x\n")));
  EXPECT_THAT(SplitWhole("```\nx\n    ```\n"),
              ::testing::ElementsAre(Code("x\n    ```\n"), Block("x\n    ```\n")));
}

TEST(FenceSplitterTest, ContentLosesTheOpeningFencesIndentation) {
  EXPECT_THAT(SplitWhole("  ```\n\n   x\n  \n  ```\n"),
              ::testing::ElementsAre(Code("\n x\n\n"), Block("\n x\n\n")));
}

TEST(FenceSplitterTest, OnlyTheSameCharacterAtLeastAsLongWithNothingAfterCloses) {
  EXPECT_THAT(SplitWhole("~~~\n```\nnot a close\n~~~\n"),
              ::testing::ElementsAre(Code("```\nnot a close\n"), Block("```\nnot a close\n")));
  EXPECT_THAT(SplitWhole("```\nx\n~~~\n```\n"),
              ::testing::ElementsAre(Code("x\n~~~\n"), Block("x\n~~~\n")));
  EXPECT_THAT(SplitWhole("````\nx\n```\n````\n"),
              ::testing::ElementsAre(Code("x\n```\n"), Block("x\n```\n")));
  EXPECT_THAT(SplitWhole("```\na\n``` x\nb\n```\n"),
              ::testing::ElementsAre(Code("a\n``` x\nb\n"), Block("a\n``` x\nb\n")));
  EXPECT_THAT(SplitWhole("```\ncode\n```   \nafter"),
              ::testing::ElementsAre(Code("code\n"), Block("code\n"), Prose("after")));
}

TEST(FenceSplitterTest, ShortRunsAreProse) {
  EXPECT_THAT(SplitWhole("``\n~~ x\n"), ::testing::ElementsAre(Prose("``\n~~ x\n")));
}

TEST(FenceSplitterTest, CarriageReturnLineEndsAreKept) {
  EXPECT_THAT(
      SplitWhole("a\r\n```py\r\nx = 1\r\n```\r\nb"),
      ::testing::ElementsAre(Prose("a\r\n"), Code("x = 1\r\n"), Block("x = 1\r\n"), Prose("b")));
}

TEST(FenceSplitterTest, EverySplitPointGivesTheSameOutput) {
  for (std::string_view reply : Replies()) {
    const std::vector<Segment> whole = SplitWhole(reply);
    for (size_t i = 0; i <= reply.size(); ++i) {
      EXPECT_EQ(Segments(Split({reply.substr(0, i), reply.substr(i)})), whole)
          << "split at " << i << " of " << ::testing::PrintToString(std::string(reply));
    }
  }
}

TEST(FenceSplitterTest, EveryPairOfSplitPointsGivesTheSameOutput) {
  const std::vector<Segment> whole = SplitWhole(kSampleReply);
  const std::string_view reply = kSampleReply;
  for (size_t i = 0; i <= reply.size(); ++i) {
    for (size_t j = i; j <= reply.size(); ++j) {
      ASSERT_EQ(Segments(Split({reply.substr(0, i), reply.substr(i, j - i), reply.substr(j)})),
                whole)
          << "split at " << i << " and " << j;
    }
  }
}

std::vector<std::string_view> Bytes(std::string_view text) {
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < text.size(); ++i) {
    bytes.push_back(text.substr(i, 1));
  }
  return bytes;
}

TEST(FenceSplitterTest, OneByteAtATimeGivesTheSameOutputWithRisingPositions) {
  for (std::string_view reply : Replies()) {
    const std::vector<Piece> pieces = Split(Bytes(reply));
    EXPECT_EQ(Segments(pieces), SplitWhole(reply)) << ::testing::PrintToString(std::string(reply));
    for (size_t i = 1; i < pieces.size(); ++i) {
      EXPECT_LT(pieces[i - 1].position, pieces[i].position)
          << ::testing::PrintToString(std::string(reply));
    }
  }
}

// A stream cut after any piece continues, from a replay of the whole reply, with exactly the
// rest: nothing twice, nothing lost.
TEST(FenceSplitterTest, EmittingAfterAPositionGivesExactlyTheRest) {
  for (std::string_view reply : Replies()) {
    const std::vector<Piece> pieces = Split(Bytes(reply));
    for (size_t k = 0; k < pieces.size(); ++k) {
      const std::vector<Piece> rest(pieces.begin() + static_cast<std::ptrdiff_t>(k) + 1,
                                    pieces.end());
      EXPECT_EQ(Segments(Split({reply}, pieces[k].position)), Segments(rest))
          << "after piece " << k << " of " << ::testing::PrintToString(std::string(reply));
    }
  }
}

TEST(FenceSplitterTest, EmittingAfterAPositionCutsInsideAChunk) {
  // Positions count bytes: after 3, "Hello" continues with "lo".
  EXPECT_THAT(Segments(Split({"Hello"}, 3)), ::testing::ElementsAre(Prose("lo")));
  // The block is still whole, though part of its content was sent before.
  EXPECT_THAT(Segments(Split({"```\nabcdef\n```\n"}, 6)),
              ::testing::ElementsAre(Code("cdef\n"), Block("abcdef\n")));
}

TEST(FenceSplitterTest, PositionsCountConsumedBytes) {
  FenceSplitter splitter;
  EXPECT_THAT(splitter.Feed("ab"), ::testing::ElementsAre(Piece{Kind::kProse, "ab", 2}));
  // A line start that may be a fence is held until the line says what it is.
  EXPECT_THAT(splitter.Feed("\n``"), ::testing::ElementsAre(Piece{Kind::kProse, "\n", 3}));
  EXPECT_THAT(splitter.Feed("x"), ::testing::ElementsAre(Piece{Kind::kProse, "``x", 6}));
  EXPECT_EQ(splitter.consumed(), 6);
  EXPECT_THAT(splitter.Finish(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace parley::edge
