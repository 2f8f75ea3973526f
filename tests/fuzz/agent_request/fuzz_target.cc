// The agent dialect reads everything from its request (seed 003): the query string of
// /ws/agent/stream and /agent/stream (question, dataset, model) and, on its event stream's
// reconnect, the Last-Event-ID header. The input is "QUERY\nLAST-EVENT-ID".

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edge/protocol/agent_session.h"
#include "edge/protocol/sse_events.h"
#include "edge/server/http_session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const absl::string_view query = input.substr(0, newline);
  const absl::string_view last_event_id =
      newline == absl::string_view::npos ? absl::string_view() : input.substr(newline + 1);

  parley::edge::QueryParameter(query, "question");
  parley::edge::QueryParameter(query, "model");
  parley::edge::DatasetContext(parley::edge::QueryParameter(query, "dataset"));

  absl::StatusOr<parley::edge::EventStreamPosition> position =
      parley::edge::ParseEventId(last_event_id);
  if (position.ok()) {
    // What the stream writes in its id lines must read back as the same position.
    const std::string id = parley::edge::FormatEventId(*position);
    absl::StatusOr<parley::edge::EventStreamPosition> again = parley::edge::ParseEventId(id);
    if (!again.ok() || *again != *position) {
      __builtin_trap();
    }
  }
  return 0;
}
