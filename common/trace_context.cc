#include "common/trace_context.h"

#include <random>
#include <vector>

#include "absl/strings/str_split.h"

namespace parley::common {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

bool IsLowerHex(absl::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool AllZero(absl::string_view text) { return text.find_first_not_of('0') == text.npos; }

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// Random lowercase hex of `digits` length, never all zero (the spec forbids it).
std::string RandomHex(size_t digits) {
  thread_local std::mt19937_64 engine(std::random_device{}());
  std::string out;
  do {
    out.clear();
    while (out.size() < digits) {
      uint64_t bits = engine();
      for (int i = 0; i < 16 && out.size() < digits; ++i) {
        out += kHexDigits[bits & 0xf];
        bits >>= 4;
      }
    }
  } while (AllZero(out));
  return out;
}

}  // namespace

std::optional<TraceContext> ParseTraceparent(absl::string_view value) {
  // Header values may arrive with optional surrounding whitespace.
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(value, '-');
  if (parts.size() < 4) {
    return std::nullopt;
  }
  const absl::string_view version = parts[0];
  if (version.size() != 2 || !IsLowerHex(version) || version == "ff") {
    return std::nullopt;
  }
  // Version 00 has exactly four fields; later versions may append more.
  if (version == "00" && parts.size() != 4) {
    return std::nullopt;
  }
  const absl::string_view trace_id = parts[1];
  const absl::string_view span_id = parts[2];
  const absl::string_view flags = parts[3];
  if (trace_id.size() != 32 || !IsLowerHex(trace_id) || AllZero(trace_id)) {
    return std::nullopt;
  }
  if (span_id.size() != 16 || !IsLowerHex(span_id) || AllZero(span_id)) {
    return std::nullopt;
  }
  if (flags.size() != 2 || !IsLowerHex(flags)) {
    return std::nullopt;
  }
  TraceContext context;
  context.trace_id = std::string(trace_id);
  context.span_id = std::string(span_id);
  context.flags = static_cast<uint8_t>(HexValue(flags[0]) * 16 + HexValue(flags[1]));
  return context;
}

std::string FormatTraceparent(const TraceContext& context) {
  std::string out = "00-";
  out += context.trace_id;
  out += '-';
  out += context.span_id;
  out += '-';
  out += kHexDigits[context.flags >> 4];
  out += kHexDigits[context.flags & 0xf];
  return out;
}

TraceContext NewTraceContext() {
  TraceContext context;
  context.trace_id = RandomHex(32);
  context.span_id = RandomHex(16);
  return context;
}

TraceContext ChildOf(const TraceContext& parent) {
  TraceContext child = parent;
  child.span_id = RandomHex(16);
  return child;
}

TraceContext ContinueOrStartTrace(absl::string_view traceparent) {
  if (std::optional<TraceContext> parent = ParseTraceparent(traceparent)) {
    return ChildOf(*parent);
  }
  return NewTraceContext();
}

void AttachTraceContext(grpc::ClientContext& client_context, const TraceContext& context) {
  client_context.AddMetadata(kTraceparentKey, FormatTraceparent(ChildOf(context)));
}

std::optional<TraceContext> IncomingTraceContext(const grpc::ServerContextBase& server_context) {
  const auto& metadata = server_context.client_metadata();
  const auto it = metadata.find(kTraceparentKey);
  if (it == metadata.end()) {
    return std::nullopt;
  }
  return ParseTraceparent(absl::string_view(it->second.data(), it->second.size()));
}

TraceContext ServerTraceContext(const grpc::ServerContextBase& server_context) {
  if (std::optional<TraceContext> parent = IncomingTraceContext(server_context)) {
    return ChildOf(*parent);
  }
  return NewTraceContext();
}

}  // namespace parley::common
