// Socket.IO v4 packets (seed 004) as they arrive in an Engine.IO message, and the chat events
// inside them. A packet that decodes must survive being encoded and decoded again.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/json/serialize.hpp"
#include "edge/protocol/socket_io.h"
#include "edge/protocol/socket_io_chat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace socket_io = parley::edge::socket_io;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<socket_io::Packet> packet = socket_io::Decode(text);
  if (!packet.ok()) {
    return 0;
  }
  if (packet->data.has_value() && packet->data->is_array()) {
    parley::edge::socket_io::DecodeChatEvent(packet->data->get_array());
  }
  const std::string encoded = socket_io::Encode(*packet);
  absl::StatusOr<socket_io::Packet> again = socket_io::Decode(encoded);
  if (!again.ok() || again->type != packet->type || again->nsp != packet->nsp ||
      again->id != packet->id || again->data.has_value() != packet->data.has_value() ||
      (packet->data.has_value() && *again->data != *packet->data)) {
    __builtin_trap();
  }
  return 0;
}
