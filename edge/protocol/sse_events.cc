#include "edge/protocol/sse_events.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace parley::edge {
namespace {

constexpr size_t kMaxReplyIdLength = 128;
// Enough for any reply's length, and parses into int64_t without overflow.
constexpr size_t kMaxPositionDigits = 15;

bool IsIdCharacter(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '~' ||
         c == '-';
}

}  // namespace

std::string FormatEventId(const EventStreamPosition& position) {
  return absl::StrCat(position.reply_id, ":", position.position);
}

absl::StatusOr<EventStreamPosition> ParseEventId(absl::string_view id) {
  if (id.empty()) {
    return absl::InvalidArgumentError("Last-Event-ID is empty");
  }
  const size_t colon = id.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "Last-Event-ID must be \"<reply id>:<position>\", as sent in the stream's id lines");
  }
  const absl::string_view reply_id = id.substr(0, colon);
  const absl::string_view position = id.substr(colon + 1);
  if (reply_id.empty() || reply_id.size() > kMaxReplyIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("Last-Event-ID's reply id must have 1 to ", kMaxReplyIdLength, " characters"));
  }
  for (char c : reply_id) {
    if (!IsIdCharacter(c)) {
      return absl::InvalidArgumentError(
          "Last-Event-ID's reply id may only hold letters, digits and . _ ~ -");
    }
  }
  if (position.empty() || position.size() > kMaxPositionDigits ||
      (position.size() > 1 && position[0] == '0') ||
      !std::all_of(position.begin(), position.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError(
        "Last-Event-ID's position (after the colon) must be a decimal number");
  }
  EventStreamPosition parsed;
  parsed.reply_id = std::string(reply_id);
  if (!absl::SimpleAtoi(position, &parsed.position)) {
    return absl::InvalidArgumentError("Last-Event-ID's position is out of range");
  }
  return parsed;
}

std::string EncodeSseEvent(absl::string_view id, absl::string_view data) {
  std::string event;
  if (!id.empty()) {
    absl::StrAppend(&event, "id: ", id, "\n");
  }
  // A line break inside the data would end the field: each line gets its own `data:`, which
  // EventSource joins back with "\n".
  for (absl::string_view line : absl::StrSplit(data, '\n')) {
    absl::StrAppend(&event, "data: ", absl::StripSuffix(line, "\r"), "\n");
  }
  event.push_back('\n');
  return event;
}

std::string EncodeSseComment(absl::string_view text) { return absl::StrCat(": ", text, "\n\n"); }

}  // namespace parley::edge
