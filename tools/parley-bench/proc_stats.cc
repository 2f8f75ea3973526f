#include "tools/parley-bench/proc_stats.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace parley::bench {

absl::StatusOr<ProcSample> ReadProc(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid);
  ProcSample sample;

  std::ifstream stat_file(dir + "/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) {
    return absl::NotFoundError(absl::StrCat("cannot read ", dir, "/stat"));
  }
  // The command name (field 2) may contain spaces; the fixed fields start after its ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return absl::DataLossError(absl::StrCat("malformed ", dir, "/stat"));
  }
  std::vector<std::string> fields =
      absl::StrSplit(absl::string_view(stat).substr(close + 2), ' ', absl::SkipEmpty());
  // After ')' comes field 3 (state); utime and stime are fields 14 and 15.
  constexpr size_t kUtime = 14 - 3;
  constexpr size_t kStime = 15 - 3;
  constexpr size_t kThreads = 20 - 3;
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() <= kThreads || !absl::SimpleAtoi(fields[kUtime], &utime) ||
      !absl::SimpleAtoi(fields[kStime], &stime) ||
      !absl::SimpleAtoi(fields[kThreads], &sample.threads)) {
    return absl::DataLossError(absl::StrCat("malformed ", dir, "/stat"));
  }
  sample.cpu_seconds =
      static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));

  std::ifstream status_file(dir + "/status");
  std::string line;
  while (std::getline(status_file, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      std::vector<absl::string_view> parts =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (parts.size() >= 2) {
        (void)absl::SimpleAtoi(parts[1], &sample.rss_kib);
      }
    }
  }

  std::error_code ec;
  sample.open_files = 0;
  for (std::filesystem::directory_iterator it(dir + "/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++sample.open_files;
  }
  if (ec) {
    sample.open_files = -1;
  }
  return sample;
}

}  // namespace parley::bench
