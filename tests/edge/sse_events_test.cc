#include "edge/protocol/sse_events.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::edge {
namespace {

TEST(SseEventsTest, AnEventIsAnIdLineAndADataLine) {
  EXPECT_EQ(EncodeSseEvent(FormatEventId({"9f1ce2", 42}), R"({"type":"stream_end"})"),
            "id: 9f1ce2:42\ndata: {\"type\":\"stream_end\"}\n\n");
  EXPECT_EQ(EncodeSseEvent("", "x"), "data: x\n\n");
}

TEST(SseEventsTest, LineBreaksInDataBecomeDataLines) {
  EXPECT_EQ(EncodeSseEvent("a:1", "one\ntwo\r\nthree"),
            "id: a:1\ndata: one\ndata: two\ndata: three\n\n");
}

TEST(SseEventsTest, ACommentIsIgnoredByClients) {
  EXPECT_EQ(EncodeSseComment("keep-alive"), ": keep-alive\n\n");
}

TEST(SseEventsTest, AnIdReadsBackAsWhatWasFormatted) {
  const EventStreamPosition position{"0123456789abcdef0123456789abcdef", 1234};
  absl::StatusOr<EventStreamPosition> parsed = ParseEventId(FormatEventId(position));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, position);
  parsed = ParseEventId("r:0");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, (EventStreamPosition{"r", 0}));
}

TEST(SseEventsTest, GarbageIdsAreRefusedWithAReason) {
  for (const char* garbage :
       {"", "noposition", ":5", "reply:", "reply:-1", "reply:+1", "reply:01", "reply:1x",
        "reply: 1", "re ply:1", "re/ply:1", "reply:9999999999999999", "a:b:c", "reply:\xff"}) {
    absl::StatusOr<EventStreamPosition> parsed = ParseEventId(garbage);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << garbage;
    EXPECT_THAT(parsed.status().message(), ::testing::HasSubstr("Last-Event-ID")) << garbage;
  }
  const std::string too_long = std::string(129, 'a') + ":1";
  EXPECT_FALSE(ParseEventId(too_long).ok());
  EXPECT_TRUE(ParseEventId(std::string(128, 'a') + ":1").ok());
}

}  // namespace
}  // namespace parley::edge
