#include "inference/engines/sse_parser.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::inference {
namespace {

using ::testing::ElementsAre;

// Renders events compactly so expectations read like the stream.
std::vector<std::string> Render(const std::vector<SseEvent>& events) {
  std::vector<std::string> out;
  for (const SseEvent& event : events) {
    out.push_back(event.event.empty() ? event.data : event.event + "|" + event.data);
  }
  return out;
}

std::vector<std::string> ParseWhole(const std::string& stream) {
  SseParser parser;
  std::vector<SseEvent> events;
  EXPECT_TRUE(parser.Feed(stream, events).ok());
  return Render(events);
}

// Every event stream feature in one: LF, CRLF and CR line ends, comments,
// multi-line data, named events, a field without a space, a field without a
// colon, an event without data (not dispatched), and multi-byte UTF-8.
const std::string kMixedStream =
    ": keep-alive\n\n"
    "data: one\n\n"
    "data: two\r\n\r\n"
    "data: three\r\rdata:four\n"
    "data:  five\n\n"
    "event: error\ndata: {\"e\":1}\n\n"
    "event: nothing\n\n"
    "data\n\n"
    "id: 7\nretry: 10\ndata: h\xC3\xA9llo \xF0\x9F\x98\x80\n\n";

const std::vector<std::string> kMixedEvents = {
    "one", "two", "three", "four\n five", "error|{\"e\":1}", "", "h\xC3\xA9llo \xF0\x9F\x98\x80"};

TEST(SseParserTest, ParsesEveryLineEndingCommentAndField) {
  EXPECT_EQ(ParseWhole(kMixedStream), kMixedEvents);
}

TEST(SseParserTest, SameEventsWhereverTheStreamIsSplitInTwo) {
  for (size_t split = 0; split <= kMixedStream.size(); ++split) {
    SseParser parser;
    std::vector<SseEvent> events;
    ASSERT_TRUE(parser.Feed(kMixedStream.substr(0, split), events).ok());
    ASSERT_TRUE(parser.Feed(kMixedStream.substr(split), events).ok());
    EXPECT_EQ(Render(events), kMixedEvents) << "split at " << split;
  }
}

TEST(SseParserTest, SameEventsWhenFedOneByteAtATime) {
  SseParser parser;
  std::vector<SseEvent> events;
  for (char byte : kMixedStream) {
    ASSERT_TRUE(parser.Feed(std::string_view(&byte, 1), events).ok());
  }
  EXPECT_EQ(Render(events), kMixedEvents);
  EXPECT_TRUE(parser.idle());
}

TEST(SseParserTest, CarriageReturnAtTheEndOfAReadThenLineFeed) {
  SseParser parser;
  std::vector<SseEvent> events;
  ASSERT_TRUE(parser.Feed("data: a\r", events).ok());
  ASSERT_TRUE(parser.Feed("\n\r", events).ok());
  EXPECT_THAT(Render(events), ElementsAre("a"));
  ASSERT_TRUE(parser.Feed("\ndata: b\n\n", events).ok());
  EXPECT_THAT(Render(events), ElementsAre("a", "b"));
}

TEST(SseParserTest, ManyEventsInOneRead) {
  std::string stream;
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    stream += "data: {\"i\":" + std::to_string(i) + "}\n\n";
    expected.push_back("{\"i\":" + std::to_string(i) + "}");
  }
  EXPECT_EQ(ParseWhole(stream), expected);
}

TEST(SseParserTest, IncompleteEventIsHeldUntilItsBlankLine) {
  SseParser parser;
  std::vector<SseEvent> events;
  ASSERT_TRUE(parser.Feed("data: [DONE]\n", events).ok());
  EXPECT_TRUE(events.empty());
  EXPECT_FALSE(parser.idle());
  ASSERT_TRUE(parser.Feed("\n", events).ok());
  EXPECT_THAT(Render(events), ElementsAre("[DONE]"));
}

TEST(SseParserTest, ByteOrderMarkIsSkippedEvenWhenSplit) {
  SseParser parser;
  std::vector<SseEvent> events;
  ASSERT_TRUE(parser.Feed("\xEF", events).ok());
  ASSERT_TRUE(parser.Feed("\xBB", events).ok());
  ASSERT_TRUE(parser
                  .Feed("\xBF"
                        "data: x\n\n",
                        events)
                  .ok());
  EXPECT_THAT(Render(events), ElementsAre("x"));
}

TEST(SseParserTest, OneMebibyteEventInSmallReads) {
  const std::string payload(1 << 20, 'a');
  const std::string stream = "data: " + payload + "\n\n";
  SseParser parser;
  std::vector<SseEvent> events;
  for (size_t i = 0; i < stream.size(); i += 1500) {
    ASSERT_TRUE(parser.Feed(std::string_view(stream).substr(i, 1500), events).ok());
  }
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, payload);
}

TEST(SseParserTest, RefusesAnEventLargerThanTheLimit) {
  SseParser parser(/*max_event_bytes=*/100);
  std::vector<SseEvent> events;
  const absl::Status status = parser.Feed("data: " + std::string(200, 'x'), events);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace parley::inference
