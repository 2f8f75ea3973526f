// Engine.IO v4: a long-polling request's target (transport, sid, EIO), its POST body of packets
// separated by \x1e, and one WebSocket frame's packet. The first line of the input is the
// request target, the rest the body. What decodes must encode back to the same packets.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edge/protocol/engine_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace engine_io = parley::edge::engine_io;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const absl::string_view target = input.substr(0, newline);
  const absl::string_view body =
      newline == absl::string_view::npos ? absl::string_view() : input.substr(newline + 1);

  engine_io::ParseRequestTarget(target);

  absl::StatusOr<std::vector<engine_io::Packet>> payload = engine_io::DecodePayload(body);
  if (payload.ok()) {
    absl::StatusOr<std::vector<engine_io::Packet>> again =
        engine_io::DecodePayload(engine_io::EncodePayload(*payload));
    if (!again.ok() || *again != *payload) {
      __builtin_trap();
    }
  }
  absl::StatusOr<engine_io::Packet> packet = engine_io::DecodePacket(body);
  if (packet.ok()) {
    absl::StatusOr<engine_io::Packet> again =
        engine_io::DecodePacket(engine_io::EncodePacket(*packet));
    if (!again.ok() || *again != *packet) {
      __builtin_trap();
    }
  }
  return 0;
}
