#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "absl/strings/string_view.h"
#include "edge/protocol/dialect_session.h"
#include "edge/protocol/messages.h"

namespace parley::edge {

// Bounds of one connection's outbound queue; every field is a flag of parley-edge.
struct OutboundLimits {
  // At this many queued frames turns stop pulling tokens and reading from the client pauses.
  size_t high_water_frames = 64;
  // Above this many frames, a reply's next token is merged into its last queued one; producers
  // resume once the queue is back down to it.
  size_t low_water_frames = 16;
  // The same high mark in bytes, since merging grows a frame without adding frames. Producers
  // resume below a quarter of it.
  size_t high_water_bytes = 256 * 1024;
  // Hard cap: a frame pushed while more than this is queued means the client is not reading; its
  // connection is closed (1008). Memory per connection stays below this plus one frame.
  size_t max_bytes = 1024 * 1024;
};

// The frames waiting to go out on one connection, the one being written included. Owned by the
// transport and used on its strand only. Token deltas stay structured until they are written
// so that, while the client falls behind, a reply's next delta can be merged into its last
// queued `stream_token` (one frame carrying several seqs) instead of adding a frame; every
// other event is encoded when queued, since it is never merged and its size is then exact.
// A dialect's encoder may keep state across events, so it sees them in the order they came:
// queuing anything else first encodes the deltas queued before it, which could no longer be
// merged into anyway.
class OutboundQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // A frame being written; it stays valid until FinishWrite.
  struct Frame {
    std::string data;
    absl::string_view type;  // EventName, for metrics.
    // When the oldest data it carries arrived from inference (for added latency).
    std::optional<Clock::time_point> arrival;
  };

  enum class Pushed {
    kQueued,
    kMerged,     // Merged into a queued stream_token: one frame fewer for the client.
    kOverLimit,  // Queued, although more than `max_bytes` already was.
  };

  OutboundQueue(const OutboundLimits& limits, EventEncoder& encoder);

  // Queues the frames `event` becomes (possibly none).
  Pushed Push(Event event, std::optional<Clock::time_point> arrival);
  // Queues a frame of the dialect's own; `type` labels it in metrics.
  Pushed PushFrame(std::string frame, absl::string_view type);

  // Encodes the oldest queued frame and keeps it as the one being written. Null when a write is
  // already in progress or nothing is queued.
  const Frame* StartWrite();
  void FinishWrite();
  bool writing() const { return writing_.has_value(); }

  // Drops everything not yet being written: that frame must outlive its async_write.
  void DropQueued();

  // Gives back the memory an empty queue keeps between bursts (its frame list, the encoder's
  // scratch list); the next push allocates it again. For a connection that has gone idle: calling
  // it after every write would allocate for every frame.
  void ReleaseMemory();

  // Producers should stop until Drained().
  bool Full() const;
  bool Drained() const;

  // Both count the frame being written.
  size_t frames() const { return QueuedFrames() + (writing_.has_value() ? 1 : 0); }
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    // A token stays mergeable; anything else is its encoded frame.
    std::variant<StreamToken, std::string> payload;
    absl::string_view type;
    std::optional<Clock::time_point> arrival;
    size_t bytes = 0;
  };

  size_t QueuedFrames() const { return queued_ != nullptr ? queued_->size() : 0; }
  // The frame list, made on first use: an empty std::deque allocates already.
  std::deque<Entry>& Queued();

  // The queued stream_token of `message_id` that a new delta may extend: the last one, with only
  // other replies' tokens queued after it, so no frame is reordered for this reply or overtakes
  // a non-token event.
  Entry* MergeTarget(const std::string& message_id);
  // Encodes the deltas queued after the last encoded frame, so nothing overtakes them.
  void EncodeQueuedTokens();
  // Queues the frames in `encoded_` as one event's at `index`; returns how many.
  size_t InsertEncoded(size_t index, absl::string_view type,
                       std::optional<Clock::time_point> arrival);

  const OutboundLimits limits_;
  EventEncoder& encoder_;
  // Reused for every event, so encoding allocates no list.
  Frames encoded_;
  std::unique_ptr<std::deque<Entry>> queued_;
  std::optional<Frame> writing_;
  size_t writing_bytes_ = 0;
  size_t bytes_ = 0;
};

}  // namespace parley::edge
