#include "edge/protocol/output_sanitizer.h"

#include <utility>

#include "absl/strings/ascii.h"

namespace parley::edge {
namespace {

constexpr std::string_view kOpening = "<script";
constexpr std::string_view kReplacement = "&lt;script";

// True when `text` at `pos` starts with the first `length` bytes of "<script", in any case.
bool MatchesOpening(std::string_view text, size_t pos, size_t length) {
  for (size_t i = 0; i < length; ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(text[pos + i])) != kOpening[i]) {
      return false;
    }
  }
  return true;
}

// Appends `text` to `out` with every complete "<script" replaced; returns how many bytes at the
// end of `text` are the start of a "<script" that the next piece could complete.
size_t ReplaceInto(std::string_view text, std::string& out) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t lt = text.find('<', pos);
    if (lt == std::string_view::npos) {
      out.append(text.substr(pos));
      return 0;
    }
    out.append(text.substr(pos, lt - pos));
    const size_t available = text.size() - lt;
    if (available >= kOpening.size()) {
      if (MatchesOpening(text, lt, kOpening.size())) {
        out.append(kReplacement);
        pos = lt + kOpening.size();
      } else {
        out.push_back('<');
        pos = lt + 1;
      }
      continue;
    }
    // Fewer bytes left than "<script" has: a possible start is held back, anything else is not.
    if (MatchesOpening(text, lt, available)) {
      return available;
    }
    out.push_back('<');
    pos = lt + 1;
  }
  return 0;
}

}  // namespace

std::string OutputSanitizer::Feed(std::string_view piece) {
  std::string text = std::move(held_);
  text.append(piece);
  std::string out;
  out.reserve(text.size());
  const size_t keep = ReplaceInto(text, out);
  held_ = text.substr(text.size() - keep);
  return out;
}

std::string OutputSanitizer::Finish() { return std::exchange(held_, std::string()); }

std::string SanitizeScriptTags(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const size_t keep = ReplaceInto(text, out);
  out.append(text.substr(text.size() - keep));
  return out;
}

}  // namespace parley::edge
