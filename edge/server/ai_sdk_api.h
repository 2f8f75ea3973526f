#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edge/server/openai_api.h"

// The Vercel AI SDK's UI message stream on the edge, for front ends built on `useChat`:
// `POST /api/chat` takes useChat's default request body and answers with the UI message stream
// protocol; `GET /api/chat/{id}/stream` replays the reply still being generated for a chat, from
// persistence, and follows it live (204 when none is). docs/ai-sdk.md describes it.
namespace parley::edge {

struct ServerContext;
struct HttpHandoff;

// The fields of useChat's request body Parley reads.
struct UiChatRequest {
  std::string chat_id;  // `id`: the conversation (a Parley id or a client name).
  std::vector<CompletionMessage> messages;  // Text parts of `messages`, in order.
  std::string trigger;                      // "submit-message" or "regenerate-message".
  std::string model;                        // Optional `model` sent in the body.
};

// InvalidArgument naming what is wrong: not JSON, no `id`, no messages, a message without a
// role Parley stores, or a last message that is not the user's.
absl::StatusOr<UiChatRequest> ParseUiChatRequest(absl::string_view body);

// True for `/api/chat` and `/api/chat/{id}/stream`.
bool IsAiSdkApiPath(absl::string_view path);

// Serves one request on an IsAiSdkApiPath() path; owns the connection from then on.
void ServeAiSdkApi(ServerContext& context, HttpHandoff handoff);

}  // namespace parley::edge
