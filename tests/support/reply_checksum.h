#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "boost/json/object.hpp"

namespace parley::testing {

// Lowercase hex SHA-256 of `bytes`, computed here with OpenSSL's one-shot digest rather than
// with Parley's own code, so a test compares the server's checksum with an independent one.
std::string IndependentSha256(absl::string_view bytes);

// The check a native client makes when a reply ends: `text` is what it reassembled from
// stream_token frames (merged, resumed or replayed) and `end` the stream_complete,
// stream_cancelled or stream_interrupted frame. OK only if `end` carries a `sha256` equal to the
// checksum of exactly `text`.
absl::Status VerifyReplyChecksum(absl::string_view text, const boost::json::object& end);

}  // namespace parley::testing
