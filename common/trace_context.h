#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace parley::common {

// The W3C Trace Context of one unit of work (a turn at the edge, an RPC in a
// backend). Only the trace id is logged; it is what ties the three services'
// log lines for one turn together. Parley records no spans itself, but keeps
// the parent id and flags intact so a tracing proxy in front of or between the
// services sees a well-formed chain.
struct TraceContext {
  std::string trace_id;  // 32 lowercase hex digits, not all zero.
  std::string span_id;   // 16 lowercase hex digits, not all zero (the "parent-id" field).
  uint8_t flags = 0;     // Bit 0: sampled.
};

// The metadata key (and HTTP header name) that carries the context.
inline constexpr char kTraceparentKey[] = "traceparent";

// Parses a `traceparent` value ("00-<trace id>-<parent id>-<flags>"). Follows
// the specification's forward-compatibility rules: a higher version may carry
// more fields after the four known ones; version ff, upper-case hex, all-zero
// ids and wrong lengths are invalid (the caller then starts a new trace).
std::optional<TraceContext> ParseTraceparent(absl::string_view value);

// Formats as version 00.
std::string FormatTraceparent(const TraceContext& context);

// A new trace with random ids, sampled flag clear.
TraceContext NewTraceContext();

// Same trace, a new random span id: the context of work done on behalf of `parent`.
TraceContext ChildOf(const TraceContext& parent);

// For an incoming request at the edge: continues the trace in `traceparent`
// (may be empty) when it is valid, otherwise starts a new one.
TraceContext ContinueOrStartTrace(absl::string_view traceparent);

// Adds `traceparent` metadata to an outgoing call, with a fresh span id below
// `context`. Call before the RPC starts.
void AttachTraceContext(grpc::ClientContext& client_context, const TraceContext& context);

// The context an incoming RPC carried, if any, valid one.
std::optional<TraceContext> IncomingTraceContext(const grpc::ServerContextBase& server_context);

// The context a server handler works in: below the caller's when it sent one,
// a new trace otherwise. Log its `trace_id` on each line about this RPC.
TraceContext ServerTraceContext(const grpc::ServerContextBase& server_context);

}  // namespace parley::common
