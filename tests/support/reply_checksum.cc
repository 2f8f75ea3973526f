#include "tests/support/reply_checksum.h"

#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace parley::testing {

std::string IndependentSha256(absl::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

absl::Status VerifyReplyChecksum(absl::string_view text, const boost::json::object& end) {
  const boost::json::value* sha256 = end.if_contains("sha256");
  if (sha256 == nullptr || !sha256->is_string()) {
    return absl::NotFoundError("the end of the reply carries no \"sha256\"");
  }
  const std::string expected(sha256->get_string());
  const std::string actual = IndependentSha256(text);
  if (actual != expected) {
    return absl::DataLossError(absl::StrCat("the reassembled reply (", text.size(),
                                            " bytes) has sha256 ", actual, ", the server's is ",
                                            expected));
  }
  return absl::OkStatus();
}

}  // namespace parley::testing
