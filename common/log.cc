#include "common/log.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/serialize.hpp"
#include "boost/json/string.hpp"

namespace parley::common {
namespace {

std::string& ServiceName() {
  static std::string name = "parley";
  return name;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void AppendJsonString(std::string& out, std::string_view value) {
  out += boost::json::serialize(boost::json::string(value));
}

}  // namespace

void SetLogService(std::string_view service) { ServiceName() = std::string(service); }

void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  std::string line = absl::StrCat(
      "{\"ts\":\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      "\",\"level\":\"", LevelName(level), "\",\"service\":");
  AppendJsonString(line, ServiceName());
  line += ",\"msg\":";
  AppendJsonString(line, message);
  for (const auto& [key, value] : fields) {
    line += ',';
    AppendJsonString(line, key);
    line += ':';
    AppendJsonString(line, value);
  }
  line += "}\n";
  // One fwrite per line keeps lines whole when threads log at once.
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace parley::common
