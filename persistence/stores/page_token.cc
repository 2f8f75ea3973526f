#include "persistence/stores/page_token.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::persistence {

std::string EncodePageToken(absl::string_view kind, int64_t a, int64_t b) {
  return absl::WebSafeBase64Escape(absl::StrCat(kind, ":", a, ":", b));
}

absl::Status DecodePageToken(absl::string_view token, absl::string_view kind, int64_t* a,
                             int64_t* b) {
  std::string plain;
  if (!absl::WebSafeBase64Unescape(token, &plain)) {
    return absl::InvalidArgumentError("invalid page token");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(plain, ':');
  if (parts.size() != 3 || parts[0] != kind || !absl::SimpleAtoi(parts[1], a) ||
      !absl::SimpleAtoi(parts[2], b) || *a < 0 || *b < 0) {
    return absl::InvalidArgumentError("invalid page token");
  }
  return absl::OkStatus();
}

}  // namespace parley::persistence
