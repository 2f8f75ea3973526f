#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// Engine.IO protocol version 4: the framing under Socket.IO. A session starts either with an HTTP
// long-polling handshake (GET ...?EIO=4&transport=polling) and may then upgrade to a WebSocket,
// or directly on a WebSocket (transport=websocket). These functions are pure: the packets, the
// polling payloads, the handshake and the request checks. The sessions that use them live in
// edge/server/.
namespace parley::edge::engine_io {

// The packet types, as the digit that starts an encoded packet.
enum class PacketType : char {
  kOpen = '0',     // Server → client, once: the handshake data.
  kClose = '1',    // Either side: the session ends.
  kPing = '2',     // Server → client every ping interval; "2probe" from the client tests a new
                   // WebSocket during an upgrade.
  kPong = '3',     // Answer to a ping, carrying the same data ("3probe").
  kMessage = '4',  // A message of the protocol above (Socket.IO).
  kUpgrade = '5',  // Client → server on the new WebSocket: switch the session to it.
  kNoop = '6',     // Server → client: ends a pending poll during an upgrade.
};

struct Packet {
  PacketType type = PacketType::kMessage;
  std::string data;
  // The data are raw bytes: a WebSocket binary frame, or a polling packet written "b<base64>".
  // Only message packets are ever binary.
  bool binary = false;

  friend bool operator==(const Packet&, const Packet&) = default;
};

// Separates packets in a polling payload (the ASCII record separator).
inline constexpr char kRecordSeparator = '\x1e';

// One packet as text: "<type digit><data>" or, for binary data, "b<base64 of the data>" (the
// polling form). A WebSocket sends binary packets as binary frames instead (their data as is).
std::string EncodePacket(const Packet& packet);

// One packet from a WebSocket text frame or from one record of a polling payload. Refuses an
// empty packet, an unknown type, and a "b" packet that is not base64.
absl::StatusOr<Packet> DecodePacket(absl::string_view text);

// Several packets as one polling response body, separated by kRecordSeparator.
std::string EncodePayload(const std::vector<Packet>& packets);

// A polling request body: one packet or several separated by kRecordSeparator. Any packet that
// does not decode makes the whole payload invalid (the server then closes the session).
absl::StatusOr<std::vector<Packet>> DecodePayload(absl::string_view body);

// Engine.IO settings of the edge; every field is a flag of parley-edge.
struct EngineIoOptions {
  // The server pings every interval; a client that has not answered within the timeout is gone
  // (its session closes). Socket.IO's defaults.
  absl::Duration ping_interval = absl::Milliseconds(25000);
  absl::Duration ping_timeout = absl::Milliseconds(20000);
  // Largest polling request body, and so the `maxPayload` the handshake announces.
  size_t max_payload = 64 * 1024;
  // A probe WebSocket that has not sent the upgrade packet by then is closed.
  absl::Duration upgrade_timeout = absl::Seconds(10);
  // A session whose client has not connected to a namespace by then is closed (Socket.IO's
  // connectTimeout).
  absl::Duration connect_timeout = absl::Seconds(45);
  // Packets waiting for a polling client that does not poll, in bytes: over it the session
  // closes.
  size_t max_queued_bytes = 1024 * 1024;
  // Over this many queued bytes producers pause until the client has taken them.
  size_t high_water_bytes = 256 * 1024;
};

// The handshake the server sends in its open packet.
struct Handshake {
  std::string sid;
  // Transports the session may upgrade to: {"websocket"} for a polling session, none for a
  // session that started on a WebSocket.
  std::vector<std::string> upgrades;
  int64_t ping_interval_ms = 25000;
  int64_t ping_timeout_ms = 20000;
  // Largest polling payload the client should send, in bytes.
  int64_t max_payload = 1000000;
};

// The open packet: "0" followed by the handshake as a JSON object with the fields sid,
// upgrades, pingInterval, pingTimeout and maxPayload.
Packet OpenPacket(const Handshake& handshake);

// The errors an Engine.IO server answers a request with (HTTP 400, or 403 for kForbidden, with
// a JSON body {"code":N,"message":"..."}). Clients tell a lost session (kUnknownSid) from
// others by the code, and reconnect with a new handshake.
enum class ErrorCode {
  kUnknownTransport = 0,
  kUnknownSid = 1,
  kBadHandshakeMethod = 2,
  kBadRequest = 3,
  kForbidden = 4,
  kUnsupportedProtocolVersion = 5,
};

absl::string_view ErrorMessage(ErrorCode code);
int HttpStatus(ErrorCode code);
// {"code":1,"message":"Session ID unknown"}
std::string ErrorBody(ErrorCode code);

enum class Transport { kPolling, kWebSocket };

// What an Engine.IO request names in its query string.
struct RequestParams {
  Transport transport = Transport::kPolling;
  std::string sid;  // Empty on a handshake.
};

// Reads EIO (must be 4), transport (polling or websocket) and sid from a request target such
// as "/socket.io/?EIO=4&transport=polling&t=N8hyd6w&sid=abc". Other parameters are ignored.
std::variant<RequestParams, ErrorCode> ParseRequestTarget(absl::string_view target);

}  // namespace parley::edge::engine_io
