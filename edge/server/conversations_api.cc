#include "edge/server/conversations_api.h"

#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "boost/json/array.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "common/log.h"
#include "common/trace_context.h"
#include "edge/protocol/native_codec.h"
#include "edge/server/http_session.h"
#include "edge/server/server_context.h"
#include "edge/turn/history.h"

namespace parley::edge {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

using Headers = std::vector<std::pair<http::field, std::string>>;
using Done = std::function<void(ApiResponse)>;

constexpr absl::string_view kPrefix = "/v1/conversations";
// Matches persistence's limit on ids, so a longer one cannot name anything.
constexpr size_t kMaxIdBytes = 128;
// Headers a browser may send on a cross-origin API call.
constexpr char kAllowedRequestHeaders[] = "Authorization, Content-Type, traceparent";
// How long a browser may cache a preflight answer, in seconds.
constexpr char kPreflightMaxAge[] = "600";

template <class Name>
std::string Header(const http::request<http::string_body>& request, Name name) {
  const auto found = request.find(name);
  return found == request.end() ? "" : std::string(found->value().data(), found->value().size());
}

ApiResponse Error(unsigned status, absl::string_view code, absl::string_view message,
                  absl::string_view path_label) {
  return ApiResponse{status, ApiErrorBody(code, message), std::string(path_label), {}};
}

ApiResponse Json(json::object body, absl::string_view path_label) {
  return ApiResponse{200, json::serialize(body), std::string(path_label), {}};
}

void AddHeaders(ApiResponse& response, const Headers& headers) {
  response.headers.insert(response.headers.end(), headers.begin(), headers.end());
}

// Wraps `done` as a persistence callback: maps the answer with `on_ok` (or the error), adds
// `cors`, and keeps the call registered in the tracker until `done` has returned, so shutdown
// waits for the answer to be handed back to the connection.
template <class Response, class OnOk>
PersistenceClient::Callback<Response> Complete(ServerContext& context, absl::string_view label,
                                               Headers cors, OnOk on_ok, Done done) {
  const uint64_t key = context.tracker.Add([] {});
  return [&context, key, label = std::string(label), cors = std::move(cors),
          on_ok = std::move(on_ok), done = std::move(done)](absl::StatusOr<Response> response) {
    ApiResponse answer;
    if (response.ok()) {
      answer = on_ok(*response);
      answer.path_label = label;
    } else {
      answer = ApiResponseForStatus(response.status(), label);
      if (answer.status >= 500) {
        common::LogWarning(
            "conversations API: persistence call failed",
            {{"route", label}, {"code", absl::StatusCodeToString(response.status().code())}});
      }
    }
    AddHeaders(answer, cors);
    done(std::move(answer));
    context.tracker.Remove(key);
  };
}

}  // namespace

absl::string_view ApiRoute::label() const {
  switch (resource) {
    case Resource::kConversation:
      return "/v1/conversations/{id}";
    case Resource::kMessages:
      return "/v1/conversations/{id}/messages";
    default:
      return "/v1/conversations";
  }
}

absl::string_view ApiRoute::allowed_methods() const {
  return resource == Resource::kConversation ? "GET, PATCH, DELETE, OPTIONS" : "GET, OPTIONS";
}

bool IsConversationsApiPath(absl::string_view path) {
  return path == kPrefix || absl::StartsWith(path, absl::StrCat(kPrefix, "/"));
}

std::optional<ApiRoute> RouteConversationsApi(absl::string_view path) {
  if (path == kPrefix) {
    return ApiRoute{ApiRoute::Resource::kConversations, ""};
  }
  absl::string_view rest = path;
  if (!absl::ConsumePrefix(&rest, kPrefix) || !absl::ConsumePrefix(&rest, "/")) {
    return std::nullopt;
  }
  ApiRoute route{ApiRoute::Resource::kConversation, ""};
  const size_t slash = rest.find('/');
  if (slash != absl::string_view::npos) {
    if (rest.substr(slash) != "/messages") {
      return std::nullopt;
    }
    route.resource = ApiRoute::Resource::kMessages;
    rest = rest.substr(0, slash);
  }
  // Ids are opaque but plain: nothing a path would have to escape.
  if (rest.empty() || rest.size() > kMaxIdBytes || rest.find('%') != absl::string_view::npos) {
    return std::nullopt;
  }
  route.conversation_id = std::string(rest);
  return route;
}

absl::StatusOr<std::string> ParseRenameBody(absl::string_view body) {
  boost::system::error_code ec;
  // Boost.JSON refuses invalid UTF-8, so the title is always valid text.
  json::value value = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec || !value.is_object()) {
    return absl::InvalidArgumentError("the body must be a JSON object");
  }
  const json::value* title = value.as_object().if_contains("title");
  if (title == nullptr || !title->is_string()) {
    return absl::InvalidArgumentError("\"title\" must be a string");
  }
  const json::string& text = title->get_string();
  if (text.empty()) {
    return absl::InvalidArgumentError("\"title\" must not be empty");
  }
  size_t characters = 0;
  for (const char c : text) {
    // Count code points: every byte but UTF-8 continuation bytes starts one.
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
      ++characters;
    }
  }
  if (characters > kMaxTitleCharacters) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"title\" is longer than ", kMaxTitleCharacters, " characters"));
  }
  if (text.size() > kMaxTitleBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"title\" is longer than ", kMaxTitleBytes, " bytes in UTF-8"));
  }
  return std::string(text.data(), text.size());
}

absl::StatusOr<int32_t> ParsePageSize(absl::string_view text) {
  if (text.empty()) {
    return 0;
  }
  int64_t size = 0;
  if (!absl::SimpleAtoi(text, &size) || size < 0 || size > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("\"pageSize\" must be a non-negative integer");
  }
  return static_cast<int32_t>(size);
}

json::object ConversationJson(const persistence_pb::Conversation& conversation) {
  return ConversationJson(ToConversationSummary(conversation));
}

json::object MessageJson(const persistence_pb::Message& message) {
  return MessageJson(ToHistoryMessage(message));
}

std::string ApiErrorBody(absl::string_view code, absl::string_view message) {
  return json::serialize(json::object{
      {"error", json::object{{"code", json::string_view(code.data(), code.size())},
                             {"message", json::string_view(message.data(), message.size())}}}});
}

ApiResponse ApiResponseForStatus(const absl::Status& status, absl::string_view path_label) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
      // Someone else's conversation is indistinguishable from one that does not exist.
      return Error(404, "not_found", "no such conversation", path_label);
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      // Persistence's reasons name fields and limits (e.g. "invalid page token"), never content.
      return Error(400, "invalid_request", status.message(), path_label);
    case absl::StatusCode::kResourceExhausted: {
      // Persistence refused the call at once rather than queue it: worth a retry soon.
      ApiResponse overloaded =
          Error(503, "storage_unavailable", "persistence is overloaded; retry later", path_label);
      overloaded.headers.push_back({http::field::retry_after, "1"});
      return overloaded;
    }
    default:
      return Error(503, "storage_unavailable", "conversations cannot be reached right now",
                   path_label);
  }
}

void ServeConversationsApi(ServerContext& context, const http::request<http::string_body>& request,
                           absl::string_view path, absl::string_view query, Done done) {
  const std::optional<ApiRoute> route = RouteConversationsApi(path);
  if (!route.has_value()) {
    return done(Error(404, "not_found", "no such resource", "other"));
  }
  const absl::string_view label = route->label();

  // Browsers send Origin on cross-origin calls; the same list as for the WebSocket decides.
  Headers cors;
  const std::string origin = Header(request, http::field::origin);
  if (request.find(http::field::origin) != request.end()) {
    if (!context.origins.Allows(std::string_view(origin))) {
      context.metrics.HandshakeRefused("origin").Increment();
      return done(Error(403, "origin_not_allowed", "origin not allowed", label));
    }
    cors.emplace_back(http::field::access_control_allow_origin, origin);
    cors.emplace_back(http::field::vary, "Origin");
  }

  if (request.method() == http::verb::options) {
    // A CORS preflight carries no credentials, so it is answered before authentication.
    ApiResponse answer{204, "", std::string(label), cors};
    answer.headers.emplace_back(http::field::allow, route->allowed_methods());
    answer.headers.emplace_back(http::field::access_control_allow_methods,
                                route->allowed_methods());
    answer.headers.emplace_back(http::field::access_control_allow_headers, kAllowedRequestHeaders);
    answer.headers.emplace_back(http::field::access_control_max_age, kPreflightMaxAge);
    return done(std::move(answer));
  }

  const http::verb method = request.method();
  const bool allowed =
      method == http::verb::get || (route->resource == ApiRoute::Resource::kConversation &&
                                    (method == http::verb::patch || method == http::verb::delete_));
  if (!allowed) {
    ApiResponse answer = Error(405, "method_not_allowed", "method not allowed", label);
    answer.headers = cors;
    answer.headers.emplace_back(http::field::allow, route->allowed_methods());
    return done(std::move(answer));
  }

  absl::StatusOr<Identity> identity = context.authenticator->Authenticate(request);
  if (!identity.ok()) {
    // The reason is counted, never the token; the client learns nothing more than 401.
    const std::optional<AuthRefusal> refusal = RefusalOf(identity.status());
    context.metrics
        .HandshakeRefused(refusal.has_value() ? AuthRefusalLabel(*refusal) : "unauthenticated")
        .Increment();
    ApiResponse answer = Error(401, "unauthenticated", "authentication required", label);
    answer.headers = cors;
    answer.headers.emplace_back(http::field::www_authenticate, "Bearer");
    return done(std::move(answer));
  }
  std::string user_id =
      identity->anonymous ? DevelopmentUserId(query) : std::move(identity->user_id);
  const common::TraceContext trace =
      common::ContinueOrStartTrace(Header(request, common::kTraceparentKey));

  PersistenceClient& persistence = *context.persistence;
  const std::string& id = route->conversation_id;
  switch (route->resource) {
    case ApiRoute::Resource::kConversations: {
      absl::StatusOr<int32_t> page_size = ParsePageSize(QueryParameter(query, "pageSize"));
      if (!page_size.ok()) {
        ApiResponse answer = Error(400, "invalid_request", page_size.status().message(), label);
        answer.headers = cors;
        return done(std::move(answer));
      }
      persistence_pb::ListConversationsRequest call;
      call.set_user_id(std::move(user_id));
      call.set_page_size(*page_size);
      call.set_page_token(QueryParameter(query, "pageToken"));
      return persistence.ListConversations(
          std::move(call), trace,
          Complete<persistence_pb::ListConversationsResponse>(
              context, label, std::move(cors),
              [label](const persistence_pb::ListConversationsResponse& response) {
                json::array conversations;
                for (const persistence_pb::Conversation& conversation : response.conversations()) {
                  conversations.push_back(ConversationJson(conversation));
                }
                return Json(json::object{{"conversations", std::move(conversations)},
                                         {"nextPageToken", response.next_page_token()}},
                            label);
              },
              std::move(done)));
    }
    case ApiRoute::Resource::kMessages: {
      absl::StatusOr<int32_t> page_size = ParsePageSize(QueryParameter(query, "pageSize"));
      if (!page_size.ok()) {
        ApiResponse answer = Error(400, "invalid_request", page_size.status().message(), label);
        answer.headers = cors;
        return done(std::move(answer));
      }
      persistence_pb::ListMessagesRequest call;
      call.set_user_id(std::move(user_id));
      call.set_conversation_id(id);
      call.set_page_size(*page_size);
      call.set_page_token(QueryParameter(query, "pageToken"));
      call.set_leaf_message_id(QueryParameter(query, "leafMessageId"));
      return persistence.ListMessages(
          std::move(call), trace,
          Complete<persistence_pb::ListMessagesResponse>(
              context, label, std::move(cors),
              [label, id](const persistence_pb::ListMessagesResponse& response) {
                json::array messages;
                for (const persistence_pb::Message& message : response.messages()) {
                  messages.push_back(MessageJson(message));
                }
                return Json(json::object{{"conversationId", id},
                                         {"messages", std::move(messages)},
                                         {"nextPageToken", response.next_page_token()}},
                            label);
              },
              std::move(done)));
    }
    case ApiRoute::Resource::kConversation:
      break;
  }

  auto conversation_answer = [label](const auto& response) {
    return Json(ConversationJson(response.conversation()), label);
  };
  if (method == http::verb::get) {
    persistence_pb::GetConversationRequest call;
    call.set_user_id(std::move(user_id));
    call.set_conversation_id(id);
    return persistence.GetConversation(
        std::move(call), trace,
        Complete<persistence_pb::GetConversationResponse>(context, label, std::move(cors),
                                                          conversation_answer, std::move(done)));
  }
  if (method == http::verb::patch) {
    absl::StatusOr<std::string> title = ParseRenameBody(request.body());
    if (!title.ok()) {
      ApiResponse answer = Error(400, "invalid_request", title.status().message(), label);
      answer.headers = cors;
      return done(std::move(answer));
    }
    persistence_pb::UpdateConversationRequest call;
    call.set_user_id(std::move(user_id));
    call.mutable_conversation()->set_id(id);
    call.mutable_conversation()->set_title(*std::move(title));
    call.mutable_update_mask()->add_paths("title");
    return persistence.UpdateConversation(
        std::move(call), trace,
        Complete<persistence_pb::UpdateConversationResponse>(context, label, std::move(cors),
                                                             conversation_answer, std::move(done)));
  }
  persistence_pb::DeleteConversationRequest call;
  call.set_user_id(std::move(user_id));
  call.set_conversation_id(id);
  persistence.DeleteConversation(std::move(call), trace,
                                 Complete<persistence_pb::DeleteConversationResponse>(
                                     context, label, std::move(cors),
                                     [label](const persistence_pb::DeleteConversationResponse&) {
                                       return ApiResponse{204, "", std::string(label), {}};
                                     },
                                     std::move(done)));
}

}  // namespace parley::edge
