#pragma once

#include "boost/json/object.hpp"
#include "edge/protocol/codec.h"

namespace parley::edge {

// The native Parley protocol on /ws/chat (subprotocol "parley.v1"): camelCase
// JSON objects with a "type" field, documented in docs/protocol.md.
class NativeCodec final : public Codec {
 public:
  // The WebSocket subprotocol this dialect answers to when a client offers it.
  static constexpr absl::string_view kSubprotocol = "parley.v1";

  absl::string_view name() const override { return "native"; }
  std::variant<Command, ErrorEvent> Decode(std::string_view frame) const override;
  std::string Encode(const Event& event) const override;
};

// A stored message and a conversation as JSON: one spelling for the socket frames and the HTTP
// API alike.
boost::json::object MessageJson(const HistoryMessage& message);
boost::json::object ConversationJson(const ConversationSummary& conversation);

}  // namespace parley::edge
