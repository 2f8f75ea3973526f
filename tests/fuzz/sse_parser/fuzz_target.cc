// The Server-Sent Events parser reading an upstream model server's response. The network may cut
// the stream anywhere: the input fed whole and fed in pieces (cut where its first byte says) must
// give the same events.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "inference/engines/sse_parser.h"

namespace {

bool SameEvents(const std::vector<parley::inference::SseEvent>& a,
                const std::vector<parley::inference::SseEvent>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].event != b[i].event || a[i].data != b[i].data) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const size_t piece = 1 + data[0] % 16;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  // A small limit, so the fuzzer reaches the oversized-event refusal too.
  constexpr size_t kMaxEventBytes = 4096;

  parley::inference::SseParser whole(kMaxEventBytes);
  std::vector<parley::inference::SseEvent> whole_events;
  const absl::Status whole_status = whole.Feed(stream, whole_events);

  parley::inference::SseParser pieces(kMaxEventBytes);
  std::vector<parley::inference::SseEvent> piece_events;
  absl::Status piece_status;
  for (size_t at = 0; at < stream.size() && piece_status.ok(); at += piece) {
    piece_status = pieces.Feed(stream.substr(at, piece), piece_events);
  }
  if (whole_status.ok() != piece_status.ok() ||
      (whole_status.ok() && !SameEvents(whole_events, piece_events))) {
    __builtin_trap();
  }
  return 0;
}
