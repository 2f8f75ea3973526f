#pragma once

#include <string_view>

#include "parley/inference/v1/inference_service.pb.h"

namespace parley::inference {

// Rough token counts for when an engine reports none: about four bytes of
// English per token, plus the per-message framing chat templates add.
int EstimateTokens(std::string_view text);
int EstimatePromptTokens(const v1::GenerateRequest& request);

}  // namespace parley::inference
