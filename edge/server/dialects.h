#pragma once

#include <memory>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "edge/auth/token_source.h"
#include "edge/protocol/dialect_session.h"

// Every client dialect the edge speaks, in one table: routing (http_session.cc), the metrics
// labels, authentication and the sessions all read it, and nothing else decides which dialect a
// request speaks.
//
// How to add a dialect:
//  1. Its frames. A stateless mapping is a Codec (edge/protocol/codec.h): Decode one frame into
//     one Command, Encode one Event into one frame, pure functions a unit test drives; the
//     CodecSession adapter (edge/protocol/codec_session.h) makes it a session. A dialect with
//     protocol state (handshakes, pings, acknowledgement ids, several frames per event, output
//     rewritten across events, authentication inside its protocol, a command started on open)
//     implements DialectSession (edge/protocol/dialect_session.h) instead: Open(DialectHost&),
//     OnFrame(), Encode(event, frames), OnClosed(); the DialectHost gives it the request,
//     Authenticate(), OpenChat(user, ChatOptions), Send(), Close(CloseCode) and its strand.
//  2. One entry in kDialects (dialects.cc): the path, the `dialect` metrics label, the WebSocket
//     subprotocol it answers, where its token may be (TokenPlaces), the session factory and,
//     for a dialect with plain-HTTP transports (Engine.IO polling, SSE), `serve_http`.
//  3. A page in docs/dialects/ and its line in docs/dialects/README.md.
// Turns, rooms, limits, storage and metrics are the ChatConnection's
// (edge/server/chat_connection.h) and shared by every dialect; a behaviour a dialect needs
// beyond them becomes an option of the connection (ChatOptions), not logic inside one codec.
namespace parley::edge {

struct ServerContext;
struct HttpHandoff;
struct Dialect;

// Serves a plain HTTP request on a dialect's path; `handoff` carries the connection, which the
// handler owns from then on (see HttpHandoff).
using ServeHttp = void (*)(ServerContext& context, const Dialect& dialect, HttpHandoff handoff);

struct Dialect {
  // The request path its clients open.
  absl::string_view path;
  // The value of the `dialect` label on its metrics.
  absl::string_view label;
  // The WebSocket subprotocol answered when a client offers it; empty answers none.
  absl::string_view subprotocol;
  // Where its clients may put their token. With `connect_packet` the session authenticates
  // (a refused token is then answered in the dialect's protocol); otherwise the upgrade is
  // refused with 401 before any frame.
  TokenPlaces tokens;
  // Makes the session of one WebSocket; null for a path that is not a WebSocket endpoint.
  std::unique_ptr<DialectSession> (*new_session)(ServerContext& context) = nullptr;
  // Requests on `path` that are not WebSocket upgrades; null answers them 404.
  ServeHttp serve_http = nullptr;
  // WebSocket upgrades that `serve_http` takes too, by their query (Engine.IO: a WebSocket that
  // names an existing session); the others become a WebSocketTransport. Null takes none.
  bool (*serve_http_upgrade)(absl::string_view query) = nullptr;

  bool authenticates_in_session() const { return tokens.connect_packet; }
};

// Every dialect, native first.
absl::Span<const Dialect> Dialects();

// The dialect served at `path`, or null.
const Dialect* FindDialect(absl::string_view path);

// The WebSocket echo endpoint at `path` (--echo_path, for conformance suites): every message
// comes back as it was sent. Authenticated like every WebSocket path.
Dialect EchoDialect(absl::string_view path);

}  // namespace parley::edge
