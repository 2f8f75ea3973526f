#pragma once

// Single chunks of a Generate stream, as an engine produces them, for tests.

#include <string>

#include "parley/inference/v1/inference_service.pb.h"

namespace parley::inference::testing {

inline v1::GenerateResponse TextChunk(const std::string& text) {
  v1::GenerateResponse chunk;
  chunk.mutable_text_delta()->set_text(text);
  return chunk;
}

inline v1::GenerateResponse ReasoningChunk(const std::string& text) {
  v1::GenerateResponse chunk;
  chunk.mutable_reasoning_delta()->set_text(text);
  return chunk;
}

inline v1::GenerateResponse UsageChunk(int completion_tokens) {
  v1::GenerateResponse chunk;
  chunk.mutable_usage()->set_completion_tokens(completion_tokens);
  return chunk;
}

}  // namespace parley::inference::testing
