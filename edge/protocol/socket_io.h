#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/json/value.hpp"

// Socket.IO protocol version 5 (socket.io and socket.io-client 3 and 4): the packets carried in
// Engine.IO message packets, in the default parser's text encoding
//   <type>[<namespace>,][<ack id>][<JSON payload>]
// e.g. 40/chat,{"token":"…"} (connect to /chat), 42/chat,7["chat:send",{…}] (an event asking for
// acknowledgement 7), 43/chat,7[{…}] (that acknowledgement). Binary packets (types 5 and 6, whose
// attachments follow as separate Engine.IO packets) are refused: no event of this edge carries
// binary data.
namespace parley::edge::socket_io {

enum class PacketType {
  kConnect = 0,
  kDisconnect = 1,
  kEvent = 2,
  kAck = 3,
  kConnectError = 4,
  kBinaryEvent = 5,
  kBinaryAck = 6,
};

// Largest acknowledgement id accepted: JavaScript clients count them in a double, exactly up to
// 2^53.
inline constexpr uint64_t kMaxAckId = (uint64_t{1} << 53) - 1;

struct Packet {
  PacketType type = PacketType::kEvent;
  std::string nsp = "/";
  std::optional<uint64_t> id;
  // Absent (no payload) or the decoded JSON payload: an object for CONNECT, an array whose first
  // element is the event name for EVENT, an array of arguments for ACK, an object {message} for
  // CONNECT_ERROR.
  std::optional<boost::json::value> data;
};

// The text encoding. The namespace is written only when it is not "/", followed by a comma even
// when nothing follows ("41/chat,").
std::string Encode(const Packet& packet);

// Parses and validates one packet as the receiving side must: the type, the namespace (from "/"
// up to "," or the end), the ack id, and a payload of the shape the type requires (none for
// DISCONNECT; an object or none for CONNECT; a non-empty array naming an event for EVENT; an
// array for ACK). Binary packets are refused with a message saying so.
absl::StatusOr<Packet> Decode(absl::string_view text);

// Event names a Socket.IO peer never sends as EVENTs, because its own library uses them.
bool IsReservedEventName(absl::string_view name);

}  // namespace parley::edge::socket_io
