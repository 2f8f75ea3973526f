#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parley::persistence {

// Page tokens are opaque to clients: a kind letter ("c" conversations, "m" messages, "p" a
// branch's messages) and two positions, base64url'd. A client can send any bytes back as one.
std::string EncodePageToken(absl::string_view kind, int64_t a, int64_t b);

// The positions of a token of `kind`; InvalidArgument for anything EncodePageToken did not make
// for that kind (other kinds, negative or overflowing numbers, bad base64url).
absl::Status DecodePageToken(absl::string_view token, absl::string_view kind, int64_t* a,
                             int64_t* b);

}  // namespace parley::persistence
