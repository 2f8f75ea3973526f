#include "edge/protocol/socket_io.h"

#include <array>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"

namespace parley::edge::socket_io {
namespace {

namespace json = boost::json;

// Longest acknowledgement id in digits (kMaxAckId has 16).
constexpr size_t kMaxAckIdDigits = 16;

// Boost.JSON reads a number past a double's range (1e400) as infinity, which JSON cannot write
// back (it would go out as `Infinity`, which no peer parses).
bool AllNumbersFinite(const json::value& value) {
  switch (value.kind()) {
    case json::kind::double_:
      return std::isfinite(value.get_double());
    case json::kind::array:
      for (const json::value& element : value.get_array()) {
        if (!AllNumbersFinite(element)) {
          return false;
        }
      }
      return true;
    case json::kind::object:
      for (const auto& [key, element] : value.get_object()) {
        if (!AllNumbersFinite(element)) {
          return false;
        }
      }
      return true;
    default:
      return true;
  }
}

absl::Status CheckPayload(const Packet& packet) {
  const std::optional<json::value>& data = packet.data;
  switch (packet.type) {
    case PacketType::kConnect:
      if (data.has_value() && !data->is_object()) {
        return absl::InvalidArgumentError("a Socket.IO CONNECT payload must be an object");
      }
      return absl::OkStatus();
    case PacketType::kDisconnect:
      if (data.has_value()) {
        return absl::InvalidArgumentError("a Socket.IO DISCONNECT has no payload");
      }
      return absl::OkStatus();
    case PacketType::kEvent: {
      if (!data.has_value() || !data->is_array() || data->get_array().empty()) {
        return absl::InvalidArgumentError(
            "a Socket.IO EVENT payload must be a non-empty array starting with the event name");
      }
      const json::value& name = data->get_array().front();
      if (name.is_string()) {
        if (IsReservedEventName(
                absl::string_view(name.get_string().data(), name.get_string().size()))) {
          return absl::InvalidArgumentError(absl::StrCat(
              "\"", absl::string_view(name.get_string().data(), name.get_string().size()),
              "\" is a reserved Socket.IO event name"));
        }
        return absl::OkStatus();
      }
      if (!name.is_number()) {
        return absl::InvalidArgumentError("a Socket.IO event name must be a string");
      }
      return absl::OkStatus();
    }
    case PacketType::kAck:
      if (!data.has_value() || !data->is_array()) {
        return absl::InvalidArgumentError("a Socket.IO ACK payload must be an array");
      }
      return absl::OkStatus();
    case PacketType::kConnectError:
      if (!data.has_value() || !(data->is_object() || data->is_string())) {
        return absl::InvalidArgumentError(
            "a Socket.IO CONNECT_ERROR payload must be an object or a string");
      }
      return absl::OkStatus();
    case PacketType::kBinaryEvent:
    case PacketType::kBinaryAck:
      break;
  }
  return absl::InvalidArgumentError("binary Socket.IO packets are not supported");
}

}  // namespace

bool IsReservedEventName(absl::string_view name) {
  static constexpr std::array<absl::string_view, 6> kReserved = {
      "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"};
  for (absl::string_view reserved : kReserved) {
    if (name == reserved) {
      return true;
    }
  }
  return false;
}

std::string Encode(const Packet& packet) {
  std::string text = absl::StrCat(static_cast<int>(packet.type));
  if (!packet.nsp.empty() && packet.nsp != "/") {
    absl::StrAppend(&text, packet.nsp, ",");
  }
  if (packet.id.has_value()) {
    absl::StrAppend(&text, *packet.id);
  }
  if (packet.data.has_value()) {
    text.append(json::serialize(*packet.data));
  }
  return text;
}

absl::StatusOr<Packet> Decode(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError("a Socket.IO packet may not be empty");
  }
  const char type = text.front();
  if (type < '0' || type > '6') {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown Socket.IO packet type '", absl::string_view(&type, 1), "'"));
  }
  Packet packet;
  packet.type = static_cast<PacketType>(type - '0');
  if (packet.type == PacketType::kBinaryEvent || packet.type == PacketType::kBinaryAck) {
    return absl::InvalidArgumentError(
        "binary Socket.IO packets (attachments) are not supported: send JSON only");
  }
  size_t at = 1;
  if (at < text.size() && text[at] == '/') {
    const size_t comma = text.find(',', at);
    const size_t end = comma == absl::string_view::npos ? text.size() : comma;
    packet.nsp = std::string(text.substr(at, end - at));
    at = comma == absl::string_view::npos ? text.size() : comma + 1;
  }
  const size_t digits_start = at;
  while (at < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[at]))) {
    ++at;
  }
  if (at > digits_start) {
    if (at - digits_start > kMaxAckIdDigits) {
      return absl::InvalidArgumentError("a Socket.IO acknowledgement id is too large");
    }
    uint64_t id = 0;
    for (size_t i = digits_start; i < at; ++i) {
      id = id * 10 + static_cast<uint64_t>(text[i] - '0');
    }
    if (id > kMaxAckId) {
      return absl::InvalidArgumentError("a Socket.IO acknowledgement id is too large");
    }
    packet.id = id;
  }
  if (at < text.size()) {
    boost::system::error_code ec;
    const absl::string_view payload = text.substr(at);
    json::value data = json::parse(json::string_view(payload.data(), payload.size()), ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("a Socket.IO packet payload is not valid JSON: ", ec.message()));
    }
    // The parser's nesting limit (32) bounds the walk.
    if (!AllNumbersFinite(data)) {
      return absl::InvalidArgumentError(
          "a Socket.IO packet payload holds a number out of range (past a double's)");
    }
    packet.data = std::move(data);
  }
  if (absl::Status valid = CheckPayload(packet); !valid.ok()) {
    return valid;
  }
  return packet;
}

}  // namespace parley::edge::socket_io
