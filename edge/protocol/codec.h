#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "absl/strings/string_view.h"
#include "edge/protocol/messages.h"

namespace parley::edge {

// Translates one client dialect's text frames to commands and events back to
// frames. A codec holds no state and no logic beyond the mapping, so a new
// dialect is one new implementation of this interface; the turn engine is shared.
class Codec {
 public:
  virtual ~Codec() = default;

  // Dialect name, used in logs and metrics.
  virtual absl::string_view name() const = 0;

  // Decodes one client frame. Anything a client can get wrong comes back as the
  // ErrorEvent to send to it; the connection stays usable.
  virtual std::variant<Command, ErrorEvent> Decode(std::string_view frame) const = 0;

  virtual std::string Encode(const Event& event) const = 0;
};

}  // namespace parley::edge
