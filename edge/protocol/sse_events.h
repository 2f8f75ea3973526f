#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::edge {

// Where an event stands in a streamed reply: the SSE `id:` of each event, which a reconnecting
// EventSource sends back as `Last-Event-ID`. Spelled "<reply message id>:<position>", for
// example "9f1c…e2:42".
struct EventStreamPosition {
  std::string reply_id;
  int64_t position = 0;

  bool operator==(const EventStreamPosition&) const = default;
};

std::string FormatEventId(const EventStreamPosition& position);

// Reads a Last-Event-ID back. Anything that is not an id this edge could have sent (empty, no
// colon, a reply id with characters outside [A-Za-z0-9._~-] or longer than 128, a position that
// is not a plain decimal number) is an InvalidArgument error that says what is wrong.
absl::StatusOr<EventStreamPosition> ParseEventId(absl::string_view id);

// One Server-Sent Event: an `id:` line (omitted when `id` is empty) and a `data:` line per line
// of `data`, then the blank line that dispatches it.
std::string EncodeSseEvent(absl::string_view id, absl::string_view data);

// A comment line, which EventSource ignores: traffic for proxies while a reply waits.
std::string EncodeSseComment(absl::string_view text);

}  // namespace parley::edge
