#include "edge/server/ai_sdk_api.h"

#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "boost/asio/post.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "common/overloaded.h"
#include "edge/server/http_chat_exchange.h"
#include "edge/server/http_session.h"
#include "edge/server/server_context.h"
#include "edge/turn/conversation_names.h"

namespace parley::edge {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;
namespace net = boost::asio;

using ::parley::common::Overloaded;

constexpr absl::string_view kChatPath = "/api/chat";
constexpr absl::string_view kStreamSuffix = "/stream";
constexpr char kStreamHeader[] = "x-vercel-ai-ui-message-stream";

json::string_view View(absl::string_view text) {
  return json::string_view(text.data(), text.size());
}

std::string Part(const json::object& part) {
  return absl::StrCat("data: ", json::serialize(part), "\n\n");
}

std::string ErrorBody(absl::string_view code, absl::string_view message) {
  return json::serialize(
      json::object{{"error", json::object{{"code", View(code)}, {"message", View(message)}}}});
}

// The chat id of `/api/chat/{id}/stream`, or "" for any other path.
std::string ResumeChatId(absl::string_view path) {
  if (!absl::ConsumePrefix(&path, kChatPath) || !absl::ConsumePrefix(&path, "/") ||
      !absl::ConsumeSuffix(&path, kStreamSuffix) || path.empty() || absl::StrContains(path, '/')) {
    return "";
  }
  return std::string(path);
}

// Writes a turn's (or a resumed reply's) events as UI message stream parts.
class UiMessageResponder final : public ExchangeResponder {
 public:
  void OnEvent(const Event& event, ExchangeWriter& out) override {
    std::visit(Overloaded{
                   [&](const StreamStart& start) { Start(start.message_id, out); },
                   [&](const Resumed& resumed) {
                     if (!resumed.recovered) {
                       return out.Respond(204, "", "");
                     }
                     Start(resumed.message_id, out);
                   },
                   [&](const Heartbeat&) {
                     if (out.streaming()) {
                       out.Write(": keep-alive\n\n");
                     }
                   },
                   [&](const StreamReasoning& reasoning) {
                     if (!out.streaming()) {
                       return;
                     }
                     CloseText(out);
                     if (reasoning_id_.empty()) {
                       reasoning_id_ = absl::StrCat("reasoning-", ++parts_);
                       out.Write(Part({{"type", "reasoning-start"}, {"id", reasoning_id_}}));
                     }
                     out.Write(Part({{"type", "reasoning-delta"},
                                     {"id", reasoning_id_},
                                     {"delta", View(reasoning.text)}}));
                   },
                   [&](const StreamToken& token) {
                     if (!out.streaming()) {
                       return;
                     }
                     CloseReasoning(out);
                     if (text_id_.empty()) {
                       text_id_ = absl::StrCat("text-", ++parts_);
                       out.Write(Part({{"type", "text-start"}, {"id", text_id_}}));
                     }
                     out.Write(Part(
                         {{"type", "text-delta"}, {"id", text_id_}, {"delta", View(token.token)}}));
                   },
                   [&](const StreamComplete&) { End("", out); },
                   [&](const StreamInterrupted& interrupted) {
                     End(interrupted.error.empty()
                             ? interrupted.message
                             : absl::StrCat(interrupted.error, ": ", interrupted.message),
                         out);
                   },
                   [&](const StreamCancelled&) { End("cancelled: the reply was stopped", out); },
                   [&](const ErrorEvent& error) { Fail(error, out); },
                   [](const auto&) {},
               },
               event);
  }

 private:
  void Start(const std::string& message_id, ExchangeWriter& out) {
    out.StartStream("text/event-stream", {{kStreamHeader, "v1"}});
    out.Write(Part({{"type", "start"}, {"messageId", View(message_id)}}));
  }

  void CloseText(ExchangeWriter& out) {
    if (!text_id_.empty()) {
      out.Write(Part({{"type", "text-end"}, {"id", text_id_}}));
      text_id_.clear();
    }
  }

  void CloseReasoning(ExchangeWriter& out) {
    if (!reasoning_id_.empty()) {
      out.Write(Part({{"type", "reasoning-end"}, {"id", reasoning_id_}}));
      reasoning_id_.clear();
    }
  }

  // Ends the stream: `finish` for a reply that completed, an `error` part otherwise.
  void End(const std::string& error, ExchangeWriter& out) {
    if (!out.streaming()) {
      return out.Respond(502, "application/json", ErrorBody("inference_unavailable", error));
    }
    CloseReasoning(out);
    CloseText(out);
    if (error.empty()) {
      out.Write(Part({{"type", "finish"}}));
    } else {
      out.Write(Part({{"type", "error"}, {"errorText", View(error)}}));
    }
    out.Write("data: [DONE]\n\n");
    out.EndStream();
  }

  void Fail(const ErrorEvent& error, ExchangeWriter& out) {
    const absl::string_view code = ErrorCodeName(error.code);
    if (out.streaming()) {
      return End(absl::StrCat(code, ": ", error.message), out);
    }
    unsigned status = 500;
    HttpHeaders headers;
    switch (error.code) {
      case ErrorCode::kRateLimited:
      case ErrorCode::kTooManyTurns:
        status = 429;
        headers.emplace_back(
            "Retry-After", absl::StrCat(std::max<int64_t>(1, (error.retry_after_ms + 999) / 1000)));
        break;
      case ErrorCode::kNotFound:
        status = 404;
        break;
      case ErrorCode::kInvalidFrame:
      case ErrorCode::kInvalidJson:
        status = 400;
        break;
      case ErrorCode::kInferenceUnavailable:
        status = 502;
        break;
      case ErrorCode::kStorageUnavailable:
      case ErrorCode::kShuttingDown:
        status = 503;
        break;
      default:
        break;
    }
    out.Respond(status, "application/json", ErrorBody(code, error.message), std::move(headers));
  }

  int parts_ = 0;
  std::string text_id_;
  std::string reasoning_id_;
};

void Refuse(ServerContext& context, HttpHandoff handoff, absl::string_view label, unsigned status,
            absl::string_view code, absl::string_view message, HttpHeaders headers = {}) {
  auto exchange =
      std::make_shared<HttpChatExchange>(context, std::move(handoff), nullptr, std::string(label));
  exchange->RespondNow(status, "application/json", ErrorBody(code, message), std::move(headers));
}

// Finds the reply still being generated in a chat, and streams it from its start (persistence
// replays what it holds, then follows it live); 204 when there is none.
void ServeResume(ServerContext& context, std::shared_ptr<HttpChatExchange> exchange,
                 std::string user_id, std::string chat_id, common::TraceContext trace) {
  auto follow_newest = [&context, exchange, user_id,
                        trace](const std::string& conversation_id) mutable {
    persistence_pb::ListMessagesRequest call;
    call.set_user_id(user_id);
    call.set_conversation_id(conversation_id);
    call.set_page_size(1);
    call.set_newest(true);
    context.persistence->ListMessages(
        std::move(call), trace,
        [exchange, user_id, trace](absl::StatusOr<persistence_pb::ListMessagesResponse> response) {
          net::post(
              exchange->executor(), [exchange, user_id, trace, response = std::move(response)] {
                if (!response.ok() || response->messages().empty() ||
                    response->messages(0).role() != persistence_pb::ROLE_ASSISTANT ||
                    response->messages(0).status() != persistence_pb::MESSAGE_STATUS_STREAMING) {
                  return exchange->RespondNow(204, "", "");
                }
                exchange->Start(ChatUser{user_id, user_id}, ChatOptions{},
                                ResumeStream{response->messages(0).id(), 0}, trace);
              });
        });
  };
  if (IsParleyConversationId(chat_id)) {
    return follow_newest(chat_id);
  }
  persistence_pb::GetConversationRequest call;
  call.set_user_id(user_id);
  call.set_client_conversation_id(chat_id);
  context.persistence->GetConversation(
      std::move(call), trace,
      [exchange,
       follow_newest](absl::StatusOr<persistence_pb::GetConversationResponse> response) mutable {
        net::post(exchange->executor(),
                  [exchange, follow_newest, response = std::move(response)]() mutable {
                    if (!response.ok()) {
                      return exchange->RespondNow(204, "", "");
                    }
                    follow_newest(response->conversation().id());
                  });
      });
}

}  // namespace

absl::StatusOr<UiChatRequest> ParseUiChatRequest(absl::string_view body) {
  absl::StatusOr<json::object> parsed = ParseJsonObjectBody(body);
  if (!parsed.ok()) {
    return parsed.status();
  }
  const json::object& object = *parsed;
  UiChatRequest request;
  const json::value* id = object.if_contains("id");
  if (id == nullptr || !id->is_string() || id->get_string().empty() ||
      id->get_string().size() > 128) {
    return absl::InvalidArgumentError("id must be the chat's id (1..128 bytes)");
  }
  request.chat_id = std::string(id->get_string());
  if (const json::value* trigger = object.if_contains("trigger");
      trigger != nullptr && trigger->is_string()) {
    request.trigger = std::string(trigger->get_string());
  }
  if (const json::value* model = object.if_contains("model");
      model != nullptr && model->is_string()) {
    request.model = std::string(model->get_string());
  }
  absl::StatusOr<std::vector<CompletionMessage>> messages = ParseChatMessages(
      object, /*developer_is_system=*/false,
      [](const json::object& message, size_t /*index*/) -> absl::StatusOr<std::string> {
        // A UIMessage's text is its text parts; tool, file and reasoning parts are not stored.
        std::string text;
        if (const json::value* parts = message.if_contains("parts");
            parts != nullptr && parts->is_array()) {
          for (const json::value& part : parts->get_array()) {
            const json::object* p = part.if_object();
            const json::value* type = p == nullptr ? nullptr : p->if_contains("type");
            const json::value* part_text = p == nullptr ? nullptr : p->if_contains("text");
            if (type != nullptr && type->is_string() && type->get_string() == "text" &&
                part_text != nullptr && part_text->is_string()) {
              text += std::string(part_text->get_string());
            }
          }
        } else if (const json::value* content = message.if_contains("content");
                   content != nullptr && content->is_string()) {
          text = std::string(content->get_string());
        }
        return text;
      });
  if (!messages.ok()) {
    return messages.status();
  }
  request.messages = *std::move(messages);
  if (request.messages.back().role != persistence_pb::ROLE_USER ||
      request.messages.back().content.empty()) {
    return absl::InvalidArgumentError("the last message must be the user's, with text");
  }
  return request;
}

bool IsAiSdkApiPath(absl::string_view path) {
  return path == kChatPath || !ResumeChatId(path).empty();
}

void ServeAiSdkApi(ServerContext& context, HttpHandoff handoff) {
  const auto received = std::chrono::steady_clock::now();
  const http::request<http::string_body>& request = handoff.request;
  const absl::string_view target(request.target().data(), request.target().size());
  const size_t question = target.find('?');
  const absl::string_view path = target.substr(0, question);
  const std::string query =
      question == absl::string_view::npos ? "" : std::string(target.substr(question + 1));
  const std::string resume_chat = ResumeChatId(path);
  const std::string label = resume_chat.empty() ? "/api/chat" : "/api/chat/{id}/stream";

  HttpHeaders cors;
  if (const auto origin = request.find(http::field::origin); origin != request.end()) {
    const std::string value(origin->value());
    if (!context.origins.Allows(std::string_view(value))) {
      context.metrics.HandshakeRefused("origin").Increment();
      return Refuse(context, std::move(handoff), label, 403, "origin_not_allowed",
                    "origin not allowed");
    }
    cors.emplace_back("Access-Control-Allow-Origin", value);
    cors.emplace_back("Vary", "Origin");
  }
  if (request.method() == http::verb::options) {
    cors.emplace_back("Access-Control-Allow-Methods", resume_chat.empty() ? "POST" : "GET");
    cors.emplace_back("Access-Control-Allow-Headers",
                      absl::StrCat("Authorization, Content-Type, ", kDeadlineHeader));
    auto exchange =
        std::make_shared<HttpChatExchange>(context, std::move(handoff), nullptr, label, cors);
    return exchange->RespondNow(204, "", "");
  }
  const http::verb wanted = resume_chat.empty() ? http::verb::post : http::verb::get;
  if (request.method() != wanted) {
    return Refuse(context, std::move(handoff), label, 405, "method_not_allowed",
                  "method not allowed", {{"Allow", resume_chat.empty() ? "POST" : "GET"}});
  }
  absl::StatusOr<Identity> identity = AuthenticateApiRequest(context, request);
  if (!identity.ok()) {
    return Refuse(context, std::move(handoff), label, 401, "unauthenticated",
                  "authentication required", {{"WWW-Authenticate", "Bearer"}});
  }
  std::string user_id =
      identity->anonymous ? DevelopmentUserId(query) : std::move(identity->user_id);
  const auto traceparent = request.find(common::kTraceparentKey);
  const common::TraceContext trace = common::ContinueOrStartTrace(
      traceparent == request.end()
          ? absl::string_view()
          : absl::string_view(traceparent->value().data(), traceparent->value().size()));

  if (!resume_chat.empty()) {
    auto exchange = std::make_shared<HttpChatExchange>(
        context, std::move(handoff), std::make_unique<UiMessageResponder>(), label, cors);
    return ServeResume(context, std::move(exchange), std::move(user_id), resume_chat, trace);
  }
  absl::StatusOr<UiChatRequest> parsed = ParseUiChatRequest(request.body());
  if (!parsed.ok()) {
    return Refuse(context, std::move(handoff), label, 400, "invalid_request",
                  parsed.status().message(), cors);
  }
  int64_t deadline_ms = 0;
  if (const auto deadline =
          request.find(boost::beast::string_view(kDeadlineHeader.data(), kDeadlineHeader.size()));
      deadline != request.end()) {
    if (!absl::SimpleAtoi(absl::string_view(deadline->value().data(), deadline->value().size()),
                          &deadline_ms) ||
        deadline_ms <= 0) {
      return Refuse(context, std::move(handoff), label, 400, "invalid_request",
                    absl::StrCat(kDeadlineHeader, " must be a positive number of milliseconds"),
                    cors);
    }
  }
  auto exchange = std::make_shared<HttpChatExchange>(
      context, std::move(handoff), std::make_unique<UiMessageResponder>(), label, cors);
  StartStoredTurn(context, exchange,
                  StoredTurn{.messages = std::move(parsed->messages),
                             .model = std::move(parsed->model),
                             // The AI SDK's chat request carries no sampling settings.
                             .sampling = {},
                             .user_id = std::move(user_id),
                             .conversation = std::move(parsed->chat_id),
                             .deadline_ms = deadline_ms,
                             .trace = trace,
                             .received = received});
}

}  // namespace parley::edge
