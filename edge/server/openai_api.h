#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/json/object.hpp"
#include "common/trace_context.h"
#include "edge/auth/authenticator.h"
#include "edge/protocol/messages.h"
#include "parley/persistence/v1/conversation_service.pb.h"

// OpenAI's Chat Completions API on the edge (`POST /v1/chat/completions`, `GET /v1/models`), so
// that OpenAI clients (the official SDKs, LangChain, curl scripts) talk to Parley unchanged and
// each exchange is stored as a conversation. docs/openai-api.md describes it.
namespace parley::edge {

struct ServerContext;
struct HttpHandoff;
class HttpChatExchange;

inline constexpr absl::string_view kConversationIdHeader = "X-Parley-Conversation-Id";
inline constexpr absl::string_view kDeadlineHeader = "X-Parley-Deadline-Ms";

// One message of a request's `messages`.
struct CompletionMessage {
  ::parley::persistence::v1::Role role = ::parley::persistence::v1::ROLE_USER;
  std::string content;
};

// The fields of a Chat Completions request Parley reads; the rest are ignored.
struct CompletionRequest {
  std::string model;
  std::vector<CompletionMessage> messages;
  bool stream = false;
  bool include_usage = false;
  Sampling sampling;
  std::string user;
};

// The body of an HTTP chat API request as a JSON object; InvalidArgument when it is not one.
absl::StatusOr<boost::json::object> ParseJsonObjectBody(absl::string_view body);

// The `messages` of a chat request, the Chat Completions API's and the AI SDK's alike: a
// non-empty array of objects, each with a role among system, user and assistant (and, when
// `developer_is_system`, OpenAI's newer name for system), and a text that `text_of` reads from
// the message in the API's own shape. InvalidArgument names the message by its index.
absl::StatusOr<std::vector<CompletionMessage>> ParseChatMessages(
    const boost::json::object& request, bool developer_is_system,
    absl::FunctionRef<absl::StatusOr<std::string>(const boost::json::object& message, size_t index)>
        text_of);

// InvalidArgument naming the field when the body is not a request Parley can answer: not JSON,
// no messages, a role other than system/developer/user/assistant, content that is not text, the
// last message not from the user, or a sampling field of the wrong type or range.
absl::StatusOr<CompletionRequest> ParseCompletionRequest(absl::string_view body);

// The messages of `request` that are not yet stored on `branch` (root first): those after the
// branch when the request begins with it (same roles and texts, in order), otherwise all of them.
std::vector<CompletionMessage> NewMessages(
    const std::vector<CompletionMessage>& request,
    const std::vector<::parley::persistence::v1::Message>& branch);

// `{"error":{"message":...,"type":...,"param":null,"code":...}}`.
std::string OpenAiErrorBody(absl::string_view message, absl::string_view type,
                            absl::string_view code);

// A chat turn an HTTP API asks for with a request's whole message list.
struct StoredTurn {
  std::vector<CompletionMessage> messages;  // The last one is the user's question.
  std::string model;
  Sampling sampling;
  std::string user_id;
  // A Parley conversation id, a client's name for one (created on first use), or empty for a new
  // conversation.
  std::string conversation;
  int64_t deadline_ms = 0;
  common::TraceContext trace;
  // When the request arrived: the client's deadline counts from here, not from the turn's start
  // once the stored conversation is up to date.
  std::chrono::steady_clock::time_point received;
};

// Brings the stored conversation up to date with `turn.messages` (what is not yet on its stored
// branch is appended; an earlier part of the branch ending with a question gets another reply),
// then runs the turn that answers the last message on `exchange`. On the exchange's strand.
void StartStoredTurn(ServerContext& context, std::shared_ptr<HttpChatExchange> exchange,
                     StoredTurn turn);

// Authenticates an HTTP API request: the JWT in `Authorization: Bearer` or the `token` query
// parameter; in development mode a Bearer value that is not shaped like a JWT is ignored (such
// clients always send some key). Counts a refusal.
absl::StatusOr<Identity> AuthenticateApiRequest(
    ServerContext& context,
    const boost::beast::http::request<boost::beast::http::string_body>& request);

// True for the paths this API serves.
bool IsOpenAiApiPath(absl::string_view path);

// Serves one request on an IsOpenAiApiPath() path; owns the connection from then on.
void ServeOpenAiApi(ServerContext& context, HttpHandoff handoff);

}  // namespace parley::edge
