#pragma once

#include <initializer_list>
#include <string_view>
#include <utility>

namespace parley::common {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogField = std::pair<std::string_view, std::string_view>;

// Names the service in every log line; call once at start.
void SetLogService(std::string_view service);

// Writes one JSON object per line to stdout:
// {"ts":"…","level":"info","service":"edge","msg":"…", <fields>}.
// Never pass message text or tokens as fields: logs are not a transcript.
void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

inline void LogInfo(std::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, message, fields);
}
inline void LogWarning(std::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarning, message, fields);
}
inline void LogError(std::string_view message, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, message, fields);
}

}  // namespace parley::common
