#pragma once

#include <cstddef>
#include <deque>

#include "parley/inference/v1/inference_service.pb.h"

namespace parley::inference {

// The chunks of one Generate call that arrived while a write was in flight. Consecutive deltas
// of one kind are merged into one chunk, so a fast engine costs fewer messages; the engine's
// token count travels in its usage chunk, never in the number of chunks, so merging changes no
// count. Not thread-safe: the call's own lock guards it.
class PendingChunks {
 public:
  // Chunks waiting are merged up to this many bytes of text; past it the engine is not asked for
  // more until a write completes, so a slow reader still slows the engine down.
  static constexpr size_t kMaxBytes = 64 << 10;
  // No merged chunk grows past this, so one never exceeds what a consumer stores as one delta.
  static constexpr size_t kMaxMergedChunkBytes = 16 << 10;
  // Chunks that cannot merge (usage, finish, a change between text and reasoning, a delta after
  // the end) also hold the engine back once this many wait.
  static constexpr size_t kMaxChunks = 4;

  void Push(v1::GenerateResponse chunk);
  // Puts the stream's end on the last chunk waiting, or on a chunk of its own when none waits:
  // what ends the stream then costs no message of its own whenever a delta is still waiting.
  void PushEnd(v1::StreamEnd end);
  // The oldest chunk. Requires !empty().
  v1::GenerateResponse Pop();
  void Clear();

  bool empty() const { return chunks_.empty(); }
  size_t size() const { return chunks_.size(); }
  // Whether the engine may be asked for another chunk before a write completes.
  bool HasRoom() const { return bytes_ < kMaxBytes && chunks_.size() < kMaxChunks; }

 private:
  std::deque<v1::GenerateResponse> chunks_;
  size_t bytes_ = 0;
};

}  // namespace parley::inference
