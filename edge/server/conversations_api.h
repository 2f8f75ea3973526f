#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/json/object.hpp"
#include "parley/persistence/v1/conversation_service.pb.h"

namespace parley::edge {

struct ServerContext;

// The HTTP API over a user's stored conversations (`/v1/conversations...`), for page loads and
// conversation management: list, read, rename, delete. JSON in and out, camelCase, the same
// authentication and origin rules as the WebSocket. docs/protocol.md describes it.

// What the API answers to one request, before HTTP framing.
struct ApiResponse {
  unsigned status = 200;
  std::string body;  // JSON; empty for 204.
  // Bounded route name for the request metric, never a raw id.
  std::string path_label;
  std::vector<std::pair<boost::beast::http::field, std::string>> headers;
};

// The resource a request path names.
struct ApiRoute {
  enum class Resource { kConversations, kConversation, kMessages };
  Resource resource = Resource::kConversations;
  std::string conversation_id;  // Empty for kConversations.

  // "/v1/conversations", "/v1/conversations/{id}" or "/v1/conversations/{id}/messages".
  absl::string_view label() const;
  // The methods the resource answers, as an Allow header lists them.
  absl::string_view allowed_methods() const;
};

// Longest title a rename accepts: in characters (Unicode code points), and in UTF-8 bytes, which
// is what storage limits.
inline constexpr size_t kMaxTitleCharacters = 200;
inline constexpr size_t kMaxTitleBytes = 256;

// True for every path under the API's prefix, known or not.
bool IsConversationsApiPath(absl::string_view path);

// The resource `path` names; nullopt for a path under the prefix that names none (404).
std::optional<ApiRoute> RouteConversationsApi(absl::string_view path);

// The `title` of a PATCH body (`{"title":"..."}`): InvalidArgument when the body is not a JSON
// object, the title is missing, not a string, empty, or longer than kMaxTitleCharacters or
// kMaxTitleBytes.
absl::StatusOr<std::string> ParseRenameBody(absl::string_view body);

// A `pageSize` query value: "" is 0 (the default); InvalidArgument unless a non-negative integer
// that fits in 32 bits.
absl::StatusOr<int32_t> ParsePageSize(absl::string_view text);

boost::json::object ConversationJson(const ::parley::persistence::v1::Conversation& conversation);
boost::json::object MessageJson(const ::parley::persistence::v1::Message& message);

// `{"error":{"code":...,"message":...}}`.
std::string ApiErrorBody(absl::string_view code, absl::string_view message);

// The answer to a failed persistence call: 404 not_found, 400 invalid_request, or 503
// storage_unavailable.
ApiResponse ApiResponseForStatus(const absl::Status& status, absl::string_view path_label);

// Serves one request whose path IsConversationsApiPath(): origin check, CORS, authentication,
// then the persistence call. `done` runs exactly once, on the caller's thread or on a gRPC thread;
// the call stays registered in `context.tracker` until `done` has returned.
void ServeConversationsApi(
    ServerContext& context,
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    absl::string_view path, absl::string_view query, std::function<void(ApiResponse)> done);

}  // namespace parley::edge
