#include "common/trace_context.h"

#include "gtest/gtest.h"

namespace parley::common {
namespace {

constexpr char kExample[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceparentTest, ParsesTheSpecificationExample) {
  const std::optional<TraceContext> context = ParseTraceparent(kExample);
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(context->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(context->span_id, "00f067aa0ba902b7");
  EXPECT_EQ(context->flags, 1);
  EXPECT_EQ(FormatTraceparent(*context), kExample);
}

TEST(TraceparentTest, RefusesMalformedValues) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",       // Missing flags.
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // Upper case.
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // Zero trace id.
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // Zero parent id.
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // Forbidden version.
           "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",     // Short trace id.
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // Extra field in 00.
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",    // Not hex.
       }) {
    EXPECT_FALSE(ParseTraceparent(bad).has_value()) << bad;
  }
}

TEST(TraceparentTest, AcceptsLaterVersionsWithMoreFields) {
  const std::optional<TraceContext> context =
      ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future");
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(context->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(TraceparentTest, ContinuesAValidTraceWithANewSpan) {
  const TraceContext context = ContinueOrStartTrace(kExample);
  EXPECT_EQ(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_NE(context.span_id, "00f067aa0ba902b7");
  EXPECT_TRUE(ParseTraceparent(FormatTraceparent(context)).has_value());
}

TEST(TraceparentTest, StartsANewTraceOnGarbage) {
  const TraceContext a = ContinueOrStartTrace("garbage");
  const TraceContext b = ContinueOrStartTrace("");
  EXPECT_TRUE(ParseTraceparent(FormatTraceparent(a)).has_value());
  EXPECT_NE(a.trace_id, b.trace_id);
  EXPECT_EQ(a.trace_id.size(), 32u);
  EXPECT_EQ(a.span_id.size(), 16u);
}

}  // namespace
}  // namespace parley::common
