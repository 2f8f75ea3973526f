#include "inference/engines/openai_protocol.h"

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"

namespace parley::inference {
namespace {

namespace json = boost::json;

const char* RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_SYSTEM:
      return "system";
    case v1::ROLE_ASSISTANT:
      return "assistant";
    default:
      return "user";
  }
}

v1::FinishReason ParseFinishReason(std::string_view reason) {
  if (reason == "length") {
    return v1::FINISH_REASON_LENGTH;
  }
  if (reason == "content_filter") {
    return v1::FINISH_REASON_CONTENT_FILTER;
  }
  if (reason == "tool_calls" || reason == "function_call") {
    return v1::FINISH_REASON_TOOL_CALLS;
  }
  return v1::FINISH_REASON_STOP;  // "stop", "eos" and vendor variants all mean a natural end.
}

int IntField(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) {
    return 0;
  }
  if (value->is_int64()) {
    return static_cast<int>(value->get_int64());
  }
  if (value->is_uint64()) {
    return static_cast<int>(value->get_uint64());
  }
  return 0;
}

std::string_view StringField(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || !value->is_string()) {
    return {};
  }
  const json::string& text = value->get_string();
  return std::string_view(text.data(), text.size());
}

// The message of an OpenAI-style error: {"error":{"message":…}}, {"error":"…"}
// or {"message":…}; `fallback` when none is there.
std::string ErrorMessage(const json::value& value, std::string_view fallback) {
  if (const json::object* object = value.if_object()) {
    if (const json::value* error = object->if_contains("error")) {
      if (error->is_string()) {
        return std::string(error->get_string());
      }
      if (const json::object* inner = error->if_object()) {
        if (std::string_view message = StringField(*inner, "message"); !message.empty()) {
          return std::string(message);
        }
      }
    }
    if (std::string_view message = StringField(*object, "message"); !message.empty()) {
      return std::string(message);
    }
  }
  return std::string(fallback);
}

absl::string_view AbslView(std::string_view text) { return {text.data(), text.size()}; }

}  // namespace

std::string BuildChatCompletionBody(const v1::GenerateRequest& request,
                                    const std::string& upstream_model,
                                    const SamplingDefaults& defaults) {
  json::object body;
  if (!upstream_model.empty()) {  // Servers with one model (llama.cpp) need none.
    body["model"] = upstream_model;
  }
  json::array& messages = body["messages"].emplace_array();
  for (const v1::ChatMessage& message : request.messages()) {
    messages.push_back(
        json::object{{"role", RoleName(message.role())}, {"content", message.content()}});
  }
  body["stream"] = true;
  body["stream_options"] = json::object{{"include_usage", true}};
  const v1::SamplingParams& sampling = request.sampling();
  if (sampling.has_temperature()) {
    body["temperature"] = sampling.temperature();
  } else if (defaults.temperature) {
    body["temperature"] = *defaults.temperature;
  }
  if (sampling.has_top_p()) {
    body["top_p"] = sampling.top_p();
  } else if (defaults.top_p) {
    body["top_p"] = *defaults.top_p;
  }
  if (sampling.has_max_tokens()) {
    body["max_tokens"] = sampling.max_tokens();
  } else if (defaults.max_tokens) {
    body["max_tokens"] = *defaults.max_tokens;
  }
  if (!sampling.stop().empty()) {
    json::array& stop = body["stop"].emplace_array();
    for (const std::string& sequence : sampling.stop()) {
      stop.push_back(json::string(sequence));
    }
  }
  if (sampling.has_seed()) {
    body["seed"] = sampling.seed();
  }
  if (!request.user_id().empty()) {
    body["user"] = request.user_id();
  }
  return json::serialize(body);
}

absl::Status ParseStreamEvent(std::string_view data, StreamEvent& out) {
  if (data == "[DONE]") {
    out.done = true;
    return absl::OkStatus();
  }
  boost::system::error_code error;
  const json::value value = json::parse(json::string_view(data.data(), data.size()), error);
  if (error || !value.is_object()) {
    return absl::InternalError(
        absl::StrCat("upstream sent an event that is not a JSON object (", data.size(), " bytes)"));
  }
  const json::object& object = value.get_object();
  if (const json::value* upstream_error = object.if_contains("error");
      upstream_error != nullptr && !upstream_error->is_null()) {
    return absl::UnavailableError(
        absl::StrCat("upstream error: ", ErrorMessage(value, "unspecified")));
  }
  if (const json::value* choices = object.if_contains("choices")) {
    const json::array* list = choices->if_array();
    if (list != nullptr && !list->empty() && list->front().is_object()) {
      const json::object& choice = list->front().get_object();
      if (const json::value* delta = choice.if_contains("delta"); delta && delta->is_object()) {
        const json::object& fields = delta->get_object();
        // vLLM and DeepSeek say reasoning_content; Ollama and OpenRouter say reasoning.
        std::string_view reasoning = StringField(fields, "reasoning_content");
        if (reasoning.empty()) {
          reasoning = StringField(fields, "reasoning");
        }
        if (!reasoning.empty()) {
          v1::GenerateResponse chunk;
          chunk.mutable_reasoning_delta()->set_text(std::string(reasoning));
          out.deltas.push_back(std::move(chunk));
        }
        if (std::string_view content = StringField(fields, "content"); !content.empty()) {
          v1::GenerateResponse chunk;
          chunk.mutable_text_delta()->set_text(std::string(content));
          out.deltas.push_back(std::move(chunk));
        }
      }
      if (std::string_view reason = StringField(choice, "finish_reason"); !reason.empty()) {
        out.finish = ParseFinishReason(reason);
      }
    }
  }
  if (const json::value* usage = object.if_contains("usage"); usage && usage->is_object()) {
    const json::object& fields = usage->get_object();
    v1::Usage result;
    result.set_prompt_tokens(IntField(fields, "prompt_tokens"));
    result.set_completion_tokens(IntField(fields, "completion_tokens"));
    if (const json::value* details = fields.if_contains("completion_tokens_details");
        details && details->is_object()) {
      result.set_reasoning_tokens(IntField(details->get_object(), "reasoning_tokens"));
    }
    out.usage = result;
  }
  return absl::OkStatus();
}

absl::Status StatusFromHttpError(int http_status, std::string_view body) {
  boost::system::error_code error;
  const json::value value = json::parse(json::string_view(body.data(), body.size()), error);
  std::string message = error ? std::string(body.substr(0, 512)) : ErrorMessage(value, body);
  message = absl::StrCat("upstream HTTP ", http_status, ": ", message);
  switch (http_status) {
    case 400:
    case 413:
    case 422:
      return absl::InvalidArgumentError(AbslView(message));
    case 401:
      return absl::UnauthenticatedError(AbslView(message));
    case 403:
      return absl::PermissionDeniedError(AbslView(message));
    case 404:
      return absl::NotFoundError(AbslView(message));
    case 408:
      return absl::DeadlineExceededError(AbslView(message));
    case 429:
      return absl::ResourceExhaustedError(AbslView(message));
    default:
      return absl::UnavailableError(AbslView(message));
  }
}

}  // namespace parley::inference
