#include "inference/pending_chunks.h"

#include <algorithm>
#include <utility>

namespace parley::inference {
namespace {

size_t TextBytes(const v1::GenerateResponse& chunk) {
  if (chunk.has_text_delta()) {
    return chunk.text_delta().text().size();
  }
  return chunk.has_reasoning_delta() ? chunk.reasoning_delta().text().size() : 0;
}

}  // namespace

void PendingChunks::Push(v1::GenerateResponse chunk) {
  bytes_ += TextBytes(chunk);
  if (!chunks_.empty() && !chunks_.back().has_end()) {
    v1::GenerateResponse& last = chunks_.back();
    if (last.has_text_delta() && chunk.has_text_delta() &&
        last.text_delta().text().size() + chunk.text_delta().text().size() <=
            kMaxMergedChunkBytes) {
      last.mutable_text_delta()->mutable_text()->append(chunk.text_delta().text());
      return;
    }
    if (last.has_reasoning_delta() && chunk.has_reasoning_delta() &&
        last.reasoning_delta().text().size() + chunk.reasoning_delta().text().size() <=
            kMaxMergedChunkBytes) {
      last.mutable_reasoning_delta()->mutable_text()->append(chunk.reasoning_delta().text());
      return;
    }
  }
  chunks_.push_back(std::move(chunk));
}

void PendingChunks::PushEnd(v1::StreamEnd end) {
  if (chunks_.empty() || chunks_.back().has_end()) {
    chunks_.emplace_back();
  }
  *chunks_.back().mutable_end() = std::move(end);
}

v1::GenerateResponse PendingChunks::Pop() {
  v1::GenerateResponse chunk = std::move(chunks_.front());
  chunks_.pop_front();
  bytes_ -= std::min(bytes_, TextBytes(chunk));
  return chunk;
}

void PendingChunks::Clear() {
  chunks_.clear();
  bytes_ = 0;
}

}  // namespace parley::inference
