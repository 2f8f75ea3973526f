// Socket.IO v4 packets (seed 004) as they arrive in an Engine.IO message, and the chat events
// inside them. A packet that decodes must survive being encoded and decoded again.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/json/serialize.hpp"
#include "edge/protocol/socket_io.h"
#include "edge/protocol/socket_io_chat.h"

namespace {

// Equal JSON, except that numbers read as doubles may differ in their last bit: Boost.JSON 1.81
// reads a long number to within an ulp, so the text it writes back can read a bit differently.
bool SameJson(const boost::json::value& a, const boost::json::value& b) {
  if (a.is_double() || b.is_double()) {
    if (!a.is_number() || !b.is_number()) {
      return false;
    }
    const double x = a.to_number<double>();
    const double y = b.to_number<double>();
    return x == y || std::fabs(x - y) <= 1e-12 * std::max(std::fabs(x), std::fabs(y));
  }
  if (a.is_array() && b.is_array()) {
    const boost::json::array& left = a.get_array();
    const boost::json::array& right = b.get_array();
    if (left.size() != right.size()) {
      return false;
    }
    for (size_t i = 0; i < left.size(); ++i) {
      if (!SameJson(left[i], right[i])) {
        return false;
      }
    }
    return true;
  }
  if (a.is_object() && b.is_object()) {
    const boost::json::object& left = a.get_object();
    const boost::json::object& right = b.get_object();
    if (left.size() != right.size()) {
      return false;
    }
    for (const auto& [key, value] : left) {
      const boost::json::value* other = right.if_contains(key);
      if (other == nullptr || !SameJson(value, *other)) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

}  // namespace

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
      (packet->data.has_value() && !SameJson(*again->data, *packet->data))) {
    __builtin_trap();
  }
  return 0;
}
