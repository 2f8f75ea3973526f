#include "edge/turn/suggestions.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SuggestionsTest, TheRequestQuotesTheTurnAndAsksForAShortAnswer) {
  const inference_pb::GenerateRequest request =
      SuggestionsRequest("gpt-4o", "Add a supplier in Asia", "Done: Acme Ltd, Singapore.");
  EXPECT_EQ(request.model(), "gpt-4o");
  ASSERT_EQ(request.messages_size(), 4);
  EXPECT_EQ(request.messages(0).role(), inference_pb::ROLE_SYSTEM);
  EXPECT_EQ(request.messages(1).role(), inference_pb::ROLE_USER);
  EXPECT_EQ(request.messages(1).content(), "Add a supplier in Asia");
  EXPECT_EQ(request.messages(2).role(), inference_pb::ROLE_ASSISTANT);
  EXPECT_EQ(request.messages(2).content(), "Done: Acme Ltd, Singapore.");
  EXPECT_EQ(request.messages(3).role(), inference_pb::ROLE_USER);
  EXPECT_THAT(request.messages(3).content(), ::testing::HasSubstr("follow-up questions"));
  EXPECT_EQ(request.sampling().max_tokens(), kSuggestionMaxTokens);
}

TEST(SuggestionsTest, TheRequestCutsALongAnswerOnACharacterBoundary) {
  std::string answer;
  while (answer.size() < 2 * kSuggestionAnswerBytes) {
    answer += "é";
  }
  const std::string quoted = SuggestionsRequest("", "q", answer).messages(2).content();
  EXPECT_LE(quoted.size(), kSuggestionAnswerBytes);
  EXPECT_EQ(quoted.size() % 2, 0u);
}

TEST(SuggestionsTest, ReadsOneQuestionPerLine) {
  EXPECT_THAT(ParseSuggestions("What is a lead time?\nWho else supplies Asia?\nCan I export it?\n"),
              ElementsAre("What is a lead time?", "Who else supplies Asia?", "Can I export it?"));
}

TEST(SuggestionsTest, TakesOffNumberingBulletsQuotesAndEmphasis) {
  EXPECT_THAT(ParseSuggestions("1. \"What next?\"\n2) **How much?**\n- 'Why?'\n"),
              ElementsAre("What next?", "How much?", "Why?"));
  EXPECT_THAT(ParseSuggestions("• “Where is it?”\n* `When?`\n(3) Who?"),
              ElementsAre("Where is it?", "When?", "Who?"));
}

TEST(SuggestionsTest, DropsTheIntroductionBlankLinesAndProse) {
  EXPECT_THAT(ParseSuggestions("Here are some follow-up questions:\n\n1. Is it cheap?\n\n2. Is it "
                               "fast?\n\nI hope these help you continue the conversation."),
              ElementsAre("Is it cheap?", "Is it fast?"));
}

TEST(SuggestionsTest, KeepsAtMostThreeWithoutDuplicates) {
  EXPECT_THAT(ParseSuggestions("A?\na?\nB?\nC?\nD?"), ElementsAre("A?", "B?", "C?"));
}

TEST(SuggestionsTest, SplitsNumberedQuestionsRunTogetherOnOneLine) {
  EXPECT_THAT(ParseSuggestions("1. Is it cheap? 2. Is it fast? 3. Is it 1.5 times better?"),
              ElementsAre("Is it cheap?", "Is it fast?", "Is it 1.5 times better?"));
}

TEST(SuggestionsTest, ReadsAJsonList) {
  EXPECT_THAT(ParseSuggestions(R"(["View supplier details", "Add another supplier"])"),
              ElementsAre("View supplier details", "Add another supplier"));
}

TEST(SuggestionsTest, AcceptsShortActionsWhenNoLineIsAQuestion) {
  EXPECT_THAT(
      ParseSuggestions("View supplier details\nAdd another supplier\nRun supply chain analysis"),
      ElementsAre("View supplier details", "Add another supplier", "Run supply chain analysis"));
}

TEST(SuggestionsTest, JunkGivesNoSuggestions) {
  EXPECT_THAT(ParseSuggestions(""), IsEmpty());
  EXPECT_THAT(ParseSuggestions("   \n\n"), IsEmpty());
  EXPECT_THAT(ParseSuggestions("I'm sorry, but I cannot help with that request."), IsEmpty());
  EXPECT_THAT(ParseSuggestions("---\n***\n1.\n-"), IsEmpty());
  EXPECT_THAT(ParseSuggestions(std::string(500, 'x') + "?"), IsEmpty());
  EXPECT_THAT(ParseSuggestions("Sure! Here are three questions you could ask"), IsEmpty());
}

}  // namespace
}  // namespace parley::edge
