#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace parley::inference {

// One Server-Sent Event as the HTML standard defines it.
struct SseEvent {
  std::string event;  // The `event:` field; empty means "message".
  std::string data;   // `data:` lines joined with '\n'.
};

// An incremental, exact Server-Sent Events parser (HTML Living Standard,
// "event stream interpretation"). Bytes may arrive split anywhere — inside a
// line, between CR and LF, inside a UTF-8 character — and many events may
// arrive in one read; the events come out the same. Lines end in CRLF, LF or
// CR; `:` lines are comments (keep-alives); `id` and `retry` are ignored since
// chat completions never use them. Not thread-safe.
class SseParser {
 public:
  // An event larger than this is refused rather than buffered without bound.
  explicit SseParser(size_t max_event_bytes = 16 << 20) : max_event_bytes_(max_event_bytes) {}

  // Parses `bytes` and appends each event it completes to `events`.
  absl::Status Feed(std::string_view bytes, std::vector<SseEvent>& events);

  // True when nothing of a started event or line is buffered.
  bool idle() const { return line_.empty() && data_.empty() && !has_data_ && event_.empty(); }

 private:
  void ProcessLine(std::string_view line, std::vector<SseEvent>& events);

  const size_t max_event_bytes_;
  std::string line_;  // The incomplete last line.
  std::string data_;
  std::string event_;
  bool has_data_ = false;
  bool skip_lf_ = false;  // The previous chunk ended in CR; an LF now belongs to it.
  bool at_start_ = true;  // A UTF-8 BOM may open the stream.
};

}  // namespace parley::inference
