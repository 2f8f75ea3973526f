#include "edge/server/openai_api.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "boost/asio/post.hpp"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "common/overloaded.h"
#include "edge/auth/token_source.h"
#include "edge/server/http_chat_exchange.h"
#include "edge/server/http_session.h"
#include "edge/server/server_context.h"
#include "edge/turn/conversation_names.h"
#include "edge/turn/turn.h"

namespace parley::edge {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;
namespace net = boost::asio;

using ::parley::common::Overloaded;

constexpr absl::string_view kCompletionsPath = "/v1/chat/completions";
constexpr absl::string_view kModelsPath = "/v1/models";
// The newest stored branch a request is compared with; longer histories are compared by their
// newest messages only.
constexpr int kBranchMessages = 1000;

json::string_view View(absl::string_view text) {
  return json::string_view(text.data(), text.size());
}

std::string Header(const http::request<http::string_body>& request, absl::string_view name) {
  const auto found = request.find(boost::beast::string_view(name.data(), name.size()));
  if (found == request.end()) {
    return "";
  }
  return std::string(found->value());
}

// OpenAI clients always send a key; only one shaped like a JWT is a token.
bool LooksLikeJwt(absl::string_view token) {
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) {
    return false;
  }
  for (absl::string_view part : parts) {
    for (char c : part) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '=') {
        return false;
      }
    }
  }
  return true;
}

std::string NewRequestId() {
  thread_local absl::BitGen bits;
  return absl::StrFormat("oai-%016x%016x", absl::Uniform<uint64_t>(bits),
                         absl::Uniform<uint64_t>(bits));
}

// Text of a message's `content`: a string, or an array of `{"type":"text","text":...}` parts.
absl::StatusOr<std::string> ContentText(const json::value& content, size_t index) {
  if (content.is_string()) {
    return std::string(content.get_string());
  }
  if (content.is_array()) {
    std::string text;
    for (const json::value& part : content.get_array()) {
      const json::object* object = part.if_object();
      const json::value* type = object == nullptr ? nullptr : object->if_contains("type");
      const json::value* part_text = object == nullptr ? nullptr : object->if_contains("text");
      if (type == nullptr || !type->is_string() || type->get_string() != "text" ||
          part_text == nullptr || !part_text->is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", index, "].content: only text parts are supported"));
      }
      text += std::string(part_text->get_string());
    }
    return text;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("messages[", index, "].content must be a string or an array of text parts"));
}

absl::Status ReadNumber(const json::object& object, json::string_view key, double low, double high,
                        std::optional<double>& out) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) {
    return absl::OkStatus();
  }
  if (!value->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(key), " must be a number"));
  }
  const double number = value->to_number<double>();
  if (!(number >= low && number <= high)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(key), " must be between ", low, " and ", high));
  }
  out = number;
  return absl::OkStatus();
}

std::string Serialize(const json::object& object) { return json::serialize(object); }

std::string SseEvent(const json::object& object) {
  return absl::StrCat("data: ", json::serialize(object), "\n\n");
}

struct OpenAiError {
  unsigned status;
  std::string type;
  std::string code;
};

OpenAiError ErrorFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kRateLimited:
      return {429, "requests", "rate_limit_exceeded"};
    case ErrorCode::kTooManyTurns:
      return {429, "requests", "too_many_turns"};
    case ErrorCode::kNotFound:
      return {404, "invalid_request_error", "not_found"};
    case ErrorCode::kInvalidFrame:
    case ErrorCode::kInvalidJson:
    case ErrorCode::kUnknownType:
      return {400, "invalid_request_error", "invalid_request"};
    case ErrorCode::kDeadlineExceeded:
      return {504, "timeout", "deadline_exceeded"};
    case ErrorCode::kInferenceUnavailable:
      return {502, "server_error", "inference_unavailable"};
    case ErrorCode::kStorageUnavailable:
      return {503, "server_error", "storage_unavailable"};
    case ErrorCode::kShuttingDown:
      return {503, "server_error", "shutting_down"};
    default:
      return {500, "server_error", "internal"};
  }
}

ErrorCode ErrorCodeFromName(absl::string_view name) {
  if (name == ErrorCodeName(ErrorCode::kDeadlineExceeded)) {
    return ErrorCode::kDeadlineExceeded;
  }
  return ErrorCode::kInferenceUnavailable;
}

// Writes a turn's events as a chat.completion (non-streaming) or as chat.completion.chunk
// events (streaming).
class CompletionResponder final : public ExchangeResponder {
 public:
  // `conversation` is the X-Parley-Conversation-Id the client sent; empty until the turn's ack
  // names the conversation it created.
  CompletionResponder(const CompletionRequest& request, std::string conversation)
      : stream_(request.stream),
        include_usage_(request.include_usage),
        conversation_(std::move(conversation)),
        created_(absl::ToUnixSeconds(absl::Now())) {}

  void OnEvent(const Event& event, ExchangeWriter& out) override {
    std::visit(
        Overloaded{
            [&](const Ack& ack) {
              if (conversation_.empty()) {
                conversation_ = ack.conversation_id;
              }
            },
            [&](const StreamStart& start) {
              message_id_ = start.message_id;
              model_ = start.model;
              if (stream_) {
                out.StartStream("text/event-stream; charset=utf-8", Headers());
                out.Write(
                    SseEvent(Chunk(json::object{{"role", "assistant"}, {"content", ""}}, nullptr)));
              }
            },
            [&](const Heartbeat&) {
              if (out.streaming()) {
                out.Write(": keep-alive\n\n");
              }
            },
            [&](const StreamToken& token) {
              if (stream_) {
                out.Write(SseEvent(Chunk(json::object{{"content", View(token.token)}}, nullptr)));
              } else {
                text_ += token.token;
              }
            },
            [&](const StreamReasoning& reasoning) {
              if (stream_) {
                out.Write(SseEvent(
                    Chunk(json::object{{"reasoning_content", View(reasoning.text)}}, nullptr)));
              } else {
                reasoning_ += reasoning.text;
              }
            },
            [&](const StreamComplete& complete) { Complete(complete, out); },
            [&](const StreamInterrupted& interrupted) {
              Fail(ErrorCodeFromName(interrupted.error), interrupted.message, 0, out);
            },
            [&](const StreamCancelled&) {
              Fail(ErrorCode::kInferenceUnavailable, "the reply was cancelled", 0, out);
            },
            [&](const ErrorEvent& error) {
              Fail(error.code, error.message, error.retry_after_ms, out);
            },
            [](const auto&) {},
        },
        event);
  }

 private:
  json::object Chunk(json::object delta, json::value finish_reason) const {
    return json::object{
        {"id", View(message_id_)},
        {"object", "chat.completion.chunk"},
        {"created", created_},
        {"model", View(model_)},
        {"system_fingerprint", nullptr},
        {"choices", json::array{json::object{{"index", 0},
                                             {"delta", std::move(delta)},
                                             {"logprobs", nullptr},
                                             {"finish_reason", std::move(finish_reason)}}}}};
  }

  static json::object Usage(const StreamComplete& complete) {
    return json::object{{"prompt_tokens", complete.prompt_tokens},
                        {"completion_tokens", complete.completion_tokens},
                        {"total_tokens", complete.prompt_tokens + complete.completion_tokens}};
  }

  void Complete(const StreamComplete& complete, ExchangeWriter& out) {
    if (stream_) {
      out.Write(SseEvent(Chunk(json::object{}, View(complete.finish_reason))));
      if (include_usage_) {
        // One chunk, last before [DONE], with no choices: as OpenAI sends it.
        json::object usage = Chunk(json::object{}, nullptr);
        usage["choices"] = json::array{};
        usage["usage"] = Usage(complete);
        out.Write(SseEvent(usage));
      }
      out.Write("data: [DONE]\n\n");
      return out.EndStream();
    }
    json::object message{{"role", "assistant"}, {"content", View(text_)}, {"refusal", nullptr}};
    if (!reasoning_.empty()) {
      message["reasoning_content"] = View(reasoning_);
    }
    json::object body{
        {"id", View(message_id_)},
        {"object", "chat.completion"},
        {"created", created_},
        {"model", View(model_)},
        {"system_fingerprint", nullptr},
        {"choices", json::array{json::object{{"index", 0},
                                             {"message", std::move(message)},
                                             {"logprobs", nullptr},
                                             {"finish_reason", View(complete.finish_reason)}}}},
        {"usage", Usage(complete)}};
    out.Respond(200, "application/json", Serialize(body), Headers());
  }

  void Fail(ErrorCode code, absl::string_view message, int64_t retry_after_ms,
            ExchangeWriter& out) {
    const OpenAiError error = ErrorFor(code);
    const std::string body = OpenAiErrorBody(message, error.type, error.code);
    if (out.streaming()) {
      // The SDKs raise an error event of the stream; the stream ends there, without [DONE].
      out.Write(absl::StrCat("data: ", body, "\n\n"));
      return out.EndStream();
    }
    HttpHeaders headers = Headers();
    if (error.status == 429) {
      const int64_t seconds = std::max<int64_t>(1, (retry_after_ms + 999) / 1000);
      headers.emplace_back("Retry-After", absl::StrCat(seconds));
      headers.emplace_back("retry-after-ms", absl::StrCat(std::max<int64_t>(1, retry_after_ms)));
    }
    out.Respond(error.status, "application/json", body, std::move(headers));
  }

  HttpHeaders Headers() const {
    if (conversation_.empty()) {
      return {};
    }
    return {{std::string(kConversationIdHeader), conversation_}};
  }

  const bool stream_;
  const bool include_usage_;
  std::string conversation_;
  const int64_t created_;
  std::string message_id_;
  std::string model_;
  std::string text_;
  std::string reasoning_;
};

// Refuses a request before it reaches a chat.
void Refuse(ServerContext& context, HttpHandoff handoff, absl::string_view label, unsigned status,
            absl::string_view type, absl::string_view code, absl::string_view message,
            HttpHeaders headers = {}) {
  auto exchange =
      std::make_shared<HttpChatExchange>(context, std::move(handoff), nullptr, std::string(label));
  exchange->RespondNow(status, "application/json", OpenAiErrorBody(message, type, code),
                       std::move(headers));
}

// Brings the stored conversation up to date with a request's messages, then starts the turn
// that answers its last one: finds the conversation the header names, compares its newest branch
// with the request, stores what is new, and hands the last user message to the chat (whose turn
// finds it stored and answers it). Runs on the exchange's strand.
class CompletionSetup final : public std::enable_shared_from_this<CompletionSetup> {
 public:
  CompletionSetup(ServerContext& context, std::shared_ptr<HttpChatExchange> exchange,
                  StoredTurn turn)
      : context_(context),
        exchange_(std::move(exchange)),
        request_(std::move(turn)),
        user_id_(request_.user_id),
        conversation_header_(request_.conversation),
        deadline_ms_(request_.deadline_ms),
        trace_(request_.trace),
        request_id_(NewRequestId()) {}

  // Wraps a persistence callback so that it runs on the exchange's strand, this setup alive.
  template <class F>
  auto OnStrand(F f) {
    return [self = shared_from_this(), f = std::move(f)](auto response) mutable {
      net::post(self->exchange_->executor(),
                [self, f = std::move(f), response = std::move(response)]() mutable {
                  f(self.get(), std::move(response));
                });
    };
  }

  void Run() {
    if (conversation_header_.empty()) {
      return Store(0);
    }
    if (IsParleyConversationId(conversation_header_)) {
      conversation_id_ = conversation_header_;
      return LoadNewest();
    }
    persistence_pb::GetConversationRequest call;
    call.set_user_id(user_id_);
    call.set_client_conversation_id(conversation_header_);
    context_.persistence->GetConversation(
        std::move(call), trace_,
        OnStrand([](CompletionSetup* self,
                    absl::StatusOr<persistence_pb::GetConversationResponse> response) {
          if (response.ok()) {
            self->conversation_id_ = response->conversation().id();
            return self->LoadNewest();
          }
          if (response.status().code() != absl::StatusCode::kNotFound) {
            return self->StorageFailed(response.status());
          }
          // A name used for the first time: the first stored message creates the conversation.
          self->Store(0);
        }));
  }

 private:
  void LoadNewest() {
    persistence_pb::ListMessagesRequest call;
    call.set_user_id(user_id_);
    call.set_conversation_id(conversation_id_);
    call.set_page_size(1);
    call.set_newest(true);
    context_.persistence->ListMessages(
        std::move(call), trace_,
        OnStrand([](CompletionSetup* self,
                    absl::StatusOr<persistence_pb::ListMessagesResponse> response) {
          if (!response.ok()) {
            return self->StorageFailed(response.status());
          }
          if (response->messages().empty()) {
            return self->Compare();
          }
          self->LoadBranch(response->messages(0).id());
        }));
  }

  void LoadBranch(const std::string& leaf_id) {
    persistence_pb::ListMessagesRequest call;
    call.set_user_id(user_id_);
    call.set_conversation_id(conversation_id_);
    call.set_leaf_message_id(leaf_id);
    call.set_page_size(kBranchMessages);
    call.set_newest(true);
    context_.persistence->ListMessages(
        std::move(call), trace_,
        OnStrand([](CompletionSetup* self,
                    absl::StatusOr<persistence_pb::ListMessagesResponse> response) {
          if (!response.ok()) {
            return self->StorageFailed(response.status());
          }
          self->branch_.assign(response->messages().begin(), response->messages().end());
          self->Compare();
        }));
  }

  void Compare() {
    const std::vector<CompletionMessage>& asked = request_.messages;
    if (asked.size() < branch_.size() &&
        std::equal(asked.begin(), asked.end(), branch_.begin(),
                   [](const CompletionMessage& a, const persistence_pb::Message& b) {
                     return a.role == b.role() && a.content == b.content();
                   })) {
      // An earlier part of the stored branch, ending with a question: another reply to it (a
      // regenerate), a sibling of the one stored.
      SendMessage message = Message();
      message.regenerates_message_id = branch_[asked.size() - 1].id();
      return StartTurn(std::move(message));
    }
    new_messages_ = NewMessages(request_.messages, branch_);
    if (new_messages_.empty() && !branch_.empty()) {
      // The request repeats the stored branch, which ends with its question: answer it again.
      SendMessage message = Message();
      message.regenerates_message_id = branch_.back().id();
      return StartTurn(std::move(message));
    }
    Store(0);
  }

  // Stores new message `index` and the ones after it, then starts the turn. The question (the
  // last one) is stored under the turn's own message id, so the turn finds it stored and
  // answers it, as it answers a message a client sent twice.
  void Store(size_t index) {
    if (index == 0 && new_messages_.empty()) {
      new_messages_ = request_.messages;
    }
    if (index == new_messages_.size()) {
      return StartTurn(Message());
    }
    const bool question = index + 1 == new_messages_.size();
    const CompletionMessage& next = new_messages_[index];
    persistence_pb::AppendMessageRequest call;
    call.set_user_id(user_id_);
    if (!conversation_id_.empty()) {
      call.set_conversation_id(conversation_id_);
      call.set_parent_id(parent_id_);
    } else {
      if (!conversation_header_.empty()) {
        call.set_client_conversation_id(conversation_header_);
      }
      call.set_conversation_title(ConversationTitle(FirstUserText()));
    }
    call.set_role(next.role);
    call.set_content(next.content);
    call.set_status(persistence_pb::MESSAGE_STATUS_COMPLETE);
    call.set_client_message_id(question ? request_id_ : absl::StrCat(request_id_, ":", index));
    context_.persistence->AppendMessage(
        std::move(call), trace_,
        OnStrand([index](CompletionSetup* self,
                         absl::StatusOr<persistence_pb::AppendMessageResponse> response) {
          if (!response.ok()) {
            return self->StorageFailed(response.status());
          }
          self->conversation_id_ = response->message().conversation_id();
          self->parent_id_ = response->message().id();
          self->Store(index + 1);
        }));
  }

  std::string FirstUserText() const {
    for (const CompletionMessage& message : request_.messages) {
      if (message.role == persistence_pb::ROLE_USER) {
        return message.content;
      }
    }
    return request_.messages.front().content;
  }

  SendMessage Message() const {
    SendMessage message;
    message.id = request_id_;
    message.conversation_id = conversation_id_;
    message.content = request_.messages.back().content;
    message.model = request_.model;
    message.sampling = request_.sampling;
    if (deadline_ms_ > 0) {
      // The turn counts what it is given from its own start; the request arrived earlier. The
      // edge's cap is applied here too, so that it also counts from the request's arrival.
      const int64_t capped = std::min<int64_t>(
          deadline_ms_, absl::ToInt64Milliseconds(context_.turn_deps.max_client_deadline));
      const int64_t spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - request_.received)
                                .count();
      message.deadline_ms = std::max<int64_t>(1, capped - spent);
    }
    return message;
  }

  void StartTurn(SendMessage message) {
    ChatOptions options;
    options.unknown_model = UnknownModel::kUseDefault;
    exchange_->Start(ChatUser{user_id_, user_id_}, std::move(options), std::move(message), trace_);
  }

  void StorageFailed(const absl::Status& status) {
    if (status.code() == absl::StatusCode::kNotFound) {
      return exchange_->RespondNow(
          404, "application/json",
          OpenAiErrorBody("no such conversation", "invalid_request_error", "not_found"));
    }
    if (status.code() == absl::StatusCode::kInvalidArgument) {
      // What persistence refuses to store (a NUL byte, a text over its limit) is the request's
      // fault, not an outage: say what it was.
      return exchange_->RespondNow(
          400, "application/json",
          OpenAiErrorBody(status.message(), "invalid_request_error", "invalid_request"));
    }
    exchange_->RespondNow(
        503, "application/json",
        OpenAiErrorBody("conversations cannot be reached", "server_error", "storage_unavailable"));
  }

  ServerContext& context_;
  std::shared_ptr<HttpChatExchange> exchange_;
  const StoredTurn request_;
  const std::string user_id_;
  const std::string conversation_header_;
  const int64_t deadline_ms_;
  const common::TraceContext trace_;
  const std::string request_id_;
  std::string conversation_id_;
  std::string parent_id_;
  std::vector<persistence_pb::Message> branch_;
  std::vector<CompletionMessage> new_messages_;
};

}  // namespace

std::string OpenAiErrorBody(absl::string_view message, absl::string_view type,
                            absl::string_view code) {
  return json::serialize(json::object{{"error", json::object{{"message", View(message)},
                                                             {"type", View(type)},
                                                             {"param", nullptr},
                                                             {"code", View(code)}}}});
}

bool IsOpenAiApiPath(absl::string_view path) {
  return path == kCompletionsPath || path == kModelsPath;
}

absl::StatusOr<json::object> ParseJsonObjectBody(absl::string_view body) {
  boost::system::error_code ec;
  json::value value = json::parse(View(body), ec);
  if (ec || !value.is_object()) {
    return absl::InvalidArgumentError("the body must be a JSON object");
  }
  return std::move(value.get_object());
}

absl::StatusOr<std::vector<CompletionMessage>> ParseChatMessages(
    const json::object& request, bool developer_is_system,
    absl::FunctionRef<absl::StatusOr<std::string>(const json::object& message, size_t index)>
        text_of) {
  const json::value* messages = request.if_contains("messages");
  if (messages == nullptr || !messages->is_array() || messages->get_array().empty()) {
    return absl::InvalidArgumentError("messages must be a non-empty array");
  }
  std::vector<CompletionMessage> out;
  size_t index = 0;
  for (const json::value& item : messages->get_array()) {
    const json::object* message = item.if_object();
    const json::value* role = message == nullptr ? nullptr : message->if_contains("role");
    if (role == nullptr || !role->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", index, "].role is required"));
    }
    CompletionMessage parsed;
    const json::string_view name = role->get_string();
    if (name == "system" || (developer_is_system && name == "developer")) {
      parsed.role = persistence_pb::ROLE_SYSTEM;
    } else if (name == "user") {
      parsed.role = persistence_pb::ROLE_USER;
    } else if (name == "assistant") {
      parsed.role = persistence_pb::ROLE_ASSISTANT;
    } else if (developer_is_system) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", index, "].role \"", std::string(name),
                       "\" is not supported (system, developer, user or assistant)"));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", index, "].role must be system, user or assistant"));
    }
    absl::StatusOr<std::string> text = text_of(*message, index);
    if (!text.ok()) {
      return text.status();
    }
    parsed.content = *std::move(text);
    out.push_back(std::move(parsed));
    ++index;
  }
  return out;
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(absl::string_view body) {
  absl::StatusOr<json::object> parsed = ParseJsonObjectBody(body);
  if (!parsed.ok()) {
    return parsed.status();
  }
  const json::object& object = *parsed;
  CompletionRequest request;
  if (const json::value* model = object.if_contains("model");
      model != nullptr && !model->is_null()) {
    if (!model->is_string()) {
      return absl::InvalidArgumentError("model must be a string");
    }
    request.model = std::string(model->get_string());
  }
  absl::StatusOr<std::vector<CompletionMessage>> messages = ParseChatMessages(
      object, /*developer_is_system=*/true,
      [](const json::object& message, size_t index) -> absl::StatusOr<std::string> {
        const json::value* content = message.if_contains("content");
        if (content == nullptr || content->is_null()) {
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", index, "].content is required"));
        }
        return ContentText(*content, index);
      });
  if (!messages.ok()) {
    return messages.status();
  }
  request.messages = *std::move(messages);
  if (request.messages.back().role != persistence_pb::ROLE_USER ||
      request.messages.back().content.empty()) {
    return absl::InvalidArgumentError("the last message must be a non-empty user message");
  }
  if (const json::value* stream = object.if_contains("stream");
      stream != nullptr && !stream->is_null()) {
    if (!stream->is_bool()) {
      return absl::InvalidArgumentError("stream must be a boolean");
    }
    request.stream = stream->get_bool();
  }
  if (const json::value* options = object.if_contains("stream_options");
      options != nullptr && options->is_object()) {
    if (const json::value* usage = options->get_object().if_contains("include_usage");
        usage != nullptr && usage->is_bool()) {
      request.include_usage = usage->get_bool();
    }
  }
  for (json::string_view key : {"max_completion_tokens", "max_tokens"}) {
    const json::value* max = object.if_contains(key);
    if (max == nullptr || max->is_null() || request.sampling.max_tokens.has_value()) {
      continue;
    }
    if (!max->is_int64() || max->get_int64() < 1 || max->get_int64() > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(key), " must be a positive integer"));
    }
    request.sampling.max_tokens = static_cast<int32_t>(max->get_int64());
  }
  if (absl::Status status = ReadNumber(object, "temperature", 0, 2, request.sampling.temperature);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = ReadNumber(object, "top_p", 0, 1, request.sampling.top_p);
      !status.ok()) {
    return status;
  }
  if (const json::value* stop = object.if_contains("stop"); stop != nullptr && !stop->is_null()) {
    if (stop->is_string()) {
      request.sampling.stop.emplace_back(stop->get_string());
    } else if (stop->is_array() && stop->get_array().size() <= 4) {
      for (const json::value& item : stop->get_array()) {
        if (!item.is_string()) {
          return absl::InvalidArgumentError("stop must be a string or up to 4 strings");
        }
        request.sampling.stop.emplace_back(item.get_string());
      }
    } else {
      return absl::InvalidArgumentError("stop must be a string or up to 4 strings");
    }
  }
  if (const json::value* user = object.if_contains("user"); user != nullptr && user->is_string()) {
    request.user = std::string(user->get_string());
  }
  return request;
}

std::vector<CompletionMessage> NewMessages(const std::vector<CompletionMessage>& request,
                                           const std::vector<persistence_pb::Message>& branch) {
  if (branch.empty() || request.size() < branch.size()) {
    return request;
  }
  for (size_t i = 0; i < branch.size(); ++i) {
    if (request[i].role != branch[i].role() || request[i].content != branch[i].content()) {
      return request;
    }
  }
  return std::vector<CompletionMessage>(request.begin() + branch.size(), request.end());
}

absl::StatusOr<Identity> AuthenticateApiRequest(ServerContext& context,
                                                const http::request<http::string_body>& request) {
  const absl::string_view target(request.target().data(), request.target().size());
  // The key is the JWT; in development mode a key that is not one is ignored.
  std::string authorization = Header(request, "Authorization");
  if (context.authenticator->allow_anonymous() &&
      absl::StartsWithIgnoreCase(authorization, "Bearer ") &&
      !LooksLikeJwt(absl::StripAsciiWhitespace(absl::string_view(authorization).substr(7)))) {
    authorization.clear();
  }
  absl::StatusOr<Identity> identity = context.authenticator->Authenticate(ExtractToken(
      std::string_view(target.data(), target.size()), authorization, "",
      TokenPlaces{.authorization_header = true, .subprotocol = false, .query_parameter = true}));
  if (!identity.ok()) {
    const std::optional<AuthRefusal> refusal = RefusalOf(identity.status());
    context.metrics
        .HandshakeRefused(refusal.has_value() ? AuthRefusalLabel(*refusal) : "unauthenticated")
        .Increment();
  }
  return identity;
}

void StartStoredTurn(ServerContext& context, std::shared_ptr<HttpChatExchange> exchange,
                     StoredTurn turn) {
  std::make_shared<CompletionSetup>(context, std::move(exchange), std::move(turn))->Run();
}

void ServeOpenAiApi(ServerContext& context, HttpHandoff handoff) {
  const auto received = std::chrono::steady_clock::now();
  const http::request<http::string_body>& request = handoff.request;
  const absl::string_view target(request.target().data(), request.target().size());
  const size_t question = target.find('?');
  const std::string path(target.substr(0, question));
  const std::string query =
      question == absl::string_view::npos ? "" : std::string(target.substr(question + 1));
  const std::string label = path;

  HttpHeaders cors;
  if (request.find(http::field::origin) != request.end()) {
    const std::string origin = Header(request, "Origin");
    if (!context.origins.Allows(std::string_view(origin))) {
      context.metrics.HandshakeRefused("origin").Increment();
      return Refuse(context, std::move(handoff), label, 403, "invalid_request_error",
                    "origin_not_allowed", "origin not allowed");
    }
    cors.emplace_back("Access-Control-Allow-Origin", origin);
    cors.emplace_back("Access-Control-Expose-Headers",
                      absl::StrCat(kConversationIdHeader, ", Retry-After"));
    cors.emplace_back("Vary", "Origin");
  }
  if (request.method() == http::verb::options) {
    cors.emplace_back("Access-Control-Allow-Methods",
                      path == kModelsPath ? "GET, OPTIONS" : "POST, OPTIONS");
    cors.emplace_back("Access-Control-Allow-Headers",
                      absl::StrCat("Authorization, Content-Type, ", kConversationIdHeader, ", ",
                                   kDeadlineHeader));
    auto exchange =
        std::make_shared<HttpChatExchange>(context, std::move(handoff), nullptr, label, cors);
    return exchange->RespondNow(204, "", "");
  }
  const http::verb wanted = path == kModelsPath ? http::verb::get : http::verb::post;
  if (request.method() != wanted) {
    HttpHeaders allow = cors;
    allow.emplace_back("Allow", path == kModelsPath ? "GET" : "POST");
    return Refuse(context, std::move(handoff), label, 405, "invalid_request_error",
                  "method_not_allowed", "method not allowed", std::move(allow));
  }

  absl::StatusOr<Identity> identity = AuthenticateApiRequest(context, request);
  if (!identity.ok()) {
    HttpHeaders headers = cors;
    headers.emplace_back("WWW-Authenticate", "Bearer");
    return Refuse(context, std::move(handoff), label, 401, "invalid_request_error",
                  "invalid_api_key", "authentication required", std::move(headers));
  }
  const common::TraceContext trace =
      common::ContinueOrStartTrace(Header(request, common::kTraceparentKey));

  if (path == kModelsPath) {
    auto exchange =
        std::make_shared<HttpChatExchange>(context, std::move(handoff), nullptr, label, cors);
    return context.inference->ListModels(
        [exchange](absl::StatusOr<std::vector<std::string>> models) {
          net::post(exchange->executor(), [exchange, models = std::move(models)] {
            if (!models.ok()) {
              return exchange->RespondNow(503, "application/json",
                                          OpenAiErrorBody("the inference service cannot be reached",
                                                          "server_error", "inference_unavailable"));
            }
            json::array data;
            for (const std::string& name : *models) {
              data.push_back(json::object{
                  {"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "parley"}});
            }
            exchange->RespondNow(
                200, "application/json",
                Serialize(json::object{{"object", "list"}, {"data", std::move(data)}}));
          });
        });
  }

  absl::StatusOr<CompletionRequest> parsed = ParseCompletionRequest(request.body());
  if (!parsed.ok()) {
    return Refuse(context, std::move(handoff), label, 400, "invalid_request_error",
                  "invalid_request", parsed.status().message(), cors);
  }
  std::string user_id;
  if (!identity->anonymous) {
    user_id = std::move(identity->user_id);
  } else if (std::string named = QueryParameter(query, "userId"); !named.empty()) {
    user_id = std::move(named);
  } else if (!parsed->user.empty()) {
    user_id = parsed->user;
  } else {
    user_id = DevelopmentUserId("");
  }
  int64_t deadline_ms = 0;
  if (const std::string deadline = Header(request, kDeadlineHeader); !deadline.empty()) {
    if (!absl::SimpleAtoi(deadline, &deadline_ms) || deadline_ms <= 0) {
      return Refuse(
          context, std::move(handoff), label, 400, "invalid_request_error", "invalid_request",
          absl::StrCat(kDeadlineHeader, " must be a positive number of milliseconds"), cors);
    }
  }
  const std::string conversation = Header(request, kConversationIdHeader);
  if (conversation.size() > 128) {
    return Refuse(context, std::move(handoff), label, 400, "invalid_request_error",
                  "invalid_request",
                  absl::StrCat(kConversationIdHeader, " must be at most 128 bytes"), cors);
  }
  auto exchange = std::make_shared<HttpChatExchange>(
      context, std::move(handoff), std::make_unique<CompletionResponder>(*parsed, conversation),
      label, cors);
  StartStoredTurn(context, exchange,
                  StoredTurn{.messages = std::move(parsed->messages),
                             .model = std::move(parsed->model),
                             .sampling = std::move(parsed->sampling),
                             .user_id = std::move(user_id),
                             .conversation = conversation,
                             .deadline_ms = deadline_ms,
                             .trace = trace,
                             .received = received});
}

}  // namespace parley::edge
