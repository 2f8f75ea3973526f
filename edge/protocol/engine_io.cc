#include "edge/protocol/engine_io.h"

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"

namespace parley::edge::engine_io {
namespace {

namespace json = boost::json;

// Splits "a=1&b=2" and returns the raw value of `name`, or nullopt when it is absent. Engine.IO's
// own parameters (a version number, a transport name, a URL-safe session id) never need
// percent-decoding.
std::optional<absl::string_view> RawQueryValue(absl::string_view query, absl::string_view name) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    std::pair<absl::string_view, absl::string_view> key_value =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (key_value.first == name) {
      return absl::string_view(key_value.second.data(), key_value.second.size());
    }
  }
  return std::nullopt;
}

}  // namespace

std::string EncodePacket(const Packet& packet) {
  if (packet.binary) {
    return absl::StrCat("b", absl::Base64Escape(packet.data));
  }
  std::string text;
  text.reserve(1 + packet.data.size());
  text.push_back(static_cast<char>(packet.type));
  text.append(packet.data);
  return text;
}

absl::StatusOr<Packet> DecodePacket(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError("an Engine.IO packet may not be empty");
  }
  Packet packet;
  const char type = text.front();
  if (type == 'b') {
    packet.type = PacketType::kMessage;
    packet.binary = true;
    if (!absl::Base64Unescape(text.substr(1), &packet.data)) {
      return absl::InvalidArgumentError("an Engine.IO binary packet must be base64");
    }
    return packet;
  }
  if (type < static_cast<char>(PacketType::kOpen) || type > static_cast<char>(PacketType::kNoop)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown Engine.IO packet type '", absl::string_view(&type, 1), "'"));
  }
  packet.type = static_cast<PacketType>(type);
  packet.data = std::string(text.substr(1));
  return packet;
}

std::string EncodePayload(const std::vector<Packet>& packets) {
  std::string body;
  for (const Packet& packet : packets) {
    if (!body.empty()) {
      body.push_back(kRecordSeparator);
    }
    body.append(EncodePacket(packet));
  }
  return body;
}

absl::StatusOr<std::vector<Packet>> DecodePayload(absl::string_view body) {
  // Checked here, not left to the split: absl::StrSplit gives no records at all for a null view
  // (found by fuzz_engine_io_packet), which would make an empty body a valid, empty payload.
  if (body.empty()) {
    return absl::InvalidArgumentError("an Engine.IO payload may not be empty");
  }
  std::vector<Packet> packets;
  for (absl::string_view record : absl::StrSplit(body, kRecordSeparator)) {
    absl::StatusOr<Packet> packet = DecodePacket(absl::string_view(record.data(), record.size()));
    if (!packet.ok()) {
      return packet.status();
    }
    packets.push_back(*std::move(packet));
  }
  return packets;
}

Packet OpenPacket(const Handshake& handshake) {
  json::array upgrades;
  for (const std::string& upgrade : handshake.upgrades) {
    upgrades.emplace_back(upgrade);
  }
  const json::object data{{"sid", handshake.sid},
                          {"upgrades", std::move(upgrades)},
                          {"pingInterval", handshake.ping_interval_ms},
                          {"pingTimeout", handshake.ping_timeout_ms},
                          {"maxPayload", handshake.max_payload}};
  return Packet{PacketType::kOpen, json::serialize(data)};
}

absl::string_view ErrorMessage(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnknownTransport:
      return "Transport unknown";
    case ErrorCode::kUnknownSid:
      return "Session ID unknown";
    case ErrorCode::kBadHandshakeMethod:
      return "Bad handshake method";
    case ErrorCode::kBadRequest:
      return "Bad request";
    case ErrorCode::kForbidden:
      return "Forbidden";
    case ErrorCode::kUnsupportedProtocolVersion:
      return "Unsupported protocol version";
  }
  return "Bad request";
}

int HttpStatus(ErrorCode code) { return code == ErrorCode::kForbidden ? 403 : 400; }

std::string ErrorBody(ErrorCode code) {
  const absl::string_view message = ErrorMessage(code);
  return json::serialize(
      json::object{{"code", static_cast<int>(code)},
                   {"message", json::string_view(message.data(), message.size())}});
}

std::variant<RequestParams, ErrorCode> ParseRequestTarget(absl::string_view target) {
  const size_t question = target.find('?');
  const absl::string_view query =
      question == absl::string_view::npos ? absl::string_view() : target.substr(question + 1);
  const std::optional<absl::string_view> version = RawQueryValue(query, "EIO");
  if (!version.has_value() || *version != "4") {
    return ErrorCode::kUnsupportedProtocolVersion;
  }
  RequestParams params;
  const std::optional<absl::string_view> transport = RawQueryValue(query, "transport");
  if (transport == "polling") {
    params.transport = Transport::kPolling;
  } else if (transport == "websocket") {
    params.transport = Transport::kWebSocket;
  } else {
    return ErrorCode::kUnknownTransport;
  }
  params.sid = std::string(RawQueryValue(query, "sid").value_or(""));
  return params;
}

}  // namespace parley::edge::engine_io
