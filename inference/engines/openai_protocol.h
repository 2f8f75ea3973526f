#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "parley/inference/v1/inference_service.pb.h"

namespace parley::inference {

// Sampling defaults a model route applies when the request leaves them unset.
struct SamplingDefaults {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> max_tokens;
};

// The JSON body of a streaming POST /v1/chat/completions, asking for a final
// usage chunk (`stream_options.include_usage`).
std::string BuildChatCompletionBody(const v1::GenerateRequest& request,
                                    const std::string& upstream_model,
                                    const SamplingDefaults& defaults);

// What one `data:` event of a chat completion stream carried.
struct StreamEvent {
  bool done = false;                         // `data: [DONE]`
  std::vector<v1::GenerateResponse> deltas;  // text and reasoning deltas, in order
  std::optional<v1::FinishReason> finish;
  std::optional<v1::Usage> usage;
};

// Interprets one event's data. `{"error":…}` events and malformed JSON come
// back as errors whose message says what the upstream sent.
absl::Status ParseStreamEvent(std::string_view data, StreamEvent& out);

// Maps an upstream HTTP error to a status carrying the upstream's message:
// 400 → INVALID_ARGUMENT, 401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED,
// 404 → NOT_FOUND, 429 → RESOURCE_EXHAUSTED, 5xx (and the rest) → UNAVAILABLE.
absl::Status StatusFromHttpError(int http_status, std::string_view body);

}  // namespace parley::inference
