#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace parley::common {

// The lowercase hex SHA-256 of `bytes`: the checksum a stored reply carries, so a client that
// reassembled the reply from streamed, merged and replayed pieces can prove it has the stored
// text exactly.
std::string Sha256Hex(absl::string_view bytes);

}  // namespace parley::common
