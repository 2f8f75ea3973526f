#include "inference/engines/sse_parser.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace parley::inference {

absl::Status SseParser::Feed(std::string_view bytes, std::vector<SseEvent>& events) {
  if (at_start_ && !bytes.empty()) {
    // The BOM may itself arrive split; wait until three bytes can be judged.
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    line_.append(bytes);
    if (line_.size() < kBom.size() && kBom.starts_with(line_)) {
      return absl::OkStatus();
    }
    at_start_ = false;
    std::string pending = std::move(line_);
    line_.clear();
    std::string_view rest = pending;
    if (rest.starts_with(kBom)) {
      rest.remove_prefix(kBom.size());
    }
    return Feed(rest, events);
  }
  size_t pos = 0;
  if (skip_lf_ && !bytes.empty()) {
    skip_lf_ = false;
    if (bytes[0] == '\n') {
      pos = 1;
    }
  }
  while (pos < bytes.size()) {
    // Find the next CR or LF; scanning for both at once keeps this one pass.
    size_t end = pos;
    while (end < bytes.size() && bytes[end] != '\n' && bytes[end] != '\r') {
      ++end;
    }
    if (end == bytes.size()) {
      line_.append(bytes.substr(pos));
      break;
    }
    if (line_.empty()) {
      ProcessLine(bytes.substr(pos, end - pos), events);
    } else {
      line_.append(bytes.substr(pos, end - pos));
      ProcessLine(line_, events);
      line_.clear();
    }
    if (bytes[end] == '\r') {
      if (end + 1 == bytes.size()) {
        skip_lf_ = true;
      } else if (bytes[end + 1] == '\n') {
        ++end;
      }
    }
    pos = end + 1;
  }
  if (line_.size() + data_.size() > max_event_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("server-sent event larger than ", max_event_bytes_, " bytes"));
  }
  return absl::OkStatus();
}

void SseParser::ProcessLine(std::string_view line, std::vector<SseEvent>& events) {
  if (line.empty()) {
    // Dispatch. An event without data lines is not an event (per the standard).
    if (has_data_) {
      events.push_back(SseEvent{std::move(event_), std::move(data_)});
    }
    data_.clear();
    event_.clear();
    has_data_ = false;
    return;
  }
  if (line[0] == ':') {
    return;  // Comment, typically a keep-alive.
  }
  std::string_view field = line;
  std::string_view value;
  if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') {
      value.remove_prefix(1);
    }
  }
  if (field == "data") {
    if (has_data_) {
      data_.push_back('\n');
    }
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
}

}  // namespace parley::inference
