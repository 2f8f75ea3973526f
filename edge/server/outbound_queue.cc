#include "edge/server/outbound_queue.h"

#include <utility>

namespace parley::edge {
namespace {

// Counted on top of each frame's text: the queue slot, the event's fields and the JSON around a
// token. It makes the byte cap bound the number of frames too.
constexpr size_t kEntryOverhead = 64;

size_t TokenBytes(const StreamToken& token) {
  return token.message_id.size() + token.token.size() + kEntryOverhead;
}

}  // namespace

OutboundQueue::OutboundQueue(const OutboundLimits& limits, const Codec& codec)
    : limits_(limits), codec_(codec) {}

OutboundQueue::Pushed OutboundQueue::Push(Event event, std::optional<Clock::time_point> arrival) {
  // One large frame (a long history) may take a connection past the cap; a client that lets more
  // pile up behind it may not.
  const bool over_limit = bytes_ > limits_.max_bytes;
  Pushed pushed = Pushed::kQueued;
  if (StreamToken* token = std::get_if<StreamToken>(&event)) {
    // Below the low mark the client keeps up: every delta is its own frame, as fast as it came.
    Entry* target = frames() > limits_.low_water_frames ? MergeTarget(token->message_id) : nullptr;
    if (target != nullptr) {
      // The merged frame's seq is the last one it covers, and its text every delta up to it.
      StreamToken& queued = std::get<StreamToken>(target->payload);
      queued.seq = token->seq;
      queued.token += token->token;
      target->bytes += token->token.size();
      bytes_ += token->token.size();
      pushed = Pushed::kMerged;
    } else {
      const size_t bytes = TokenBytes(*token);
      queued_.push_back(Entry{std::move(*token), EventName(event), arrival, bytes});
      bytes_ += bytes;
    }
  } else {
    std::string frame = codec_.Encode(event);
    const size_t bytes = frame.size() + kEntryOverhead;
    queued_.push_back(Entry{std::move(frame), EventName(event), arrival, bytes});
    bytes_ += bytes;
  }
  return over_limit ? Pushed::kOverLimit : pushed;
}

OutboundQueue::Entry* OutboundQueue::MergeTarget(const std::string& message_id) {
  for (auto it = queued_.rbegin(); it != queued_.rend(); ++it) {
    StreamToken* token = std::get_if<StreamToken>(&it->payload);
    if (token == nullptr) {
      return nullptr;
    }
    if (token->message_id == message_id) {
      return &*it;
    }
  }
  return nullptr;
}

const OutboundQueue::Frame* OutboundQueue::StartWrite() {
  if (writing_.has_value() || queued_.empty()) {
    return nullptr;
  }
  Entry& next = queued_.front();
  std::string data;
  if (StreamToken* token = std::get_if<StreamToken>(&next.payload)) {
    data = codec_.Encode(Event(std::move(*token)));
  } else {
    data = std::move(std::get<std::string>(next.payload));
  }
  writing_.emplace(Frame{std::move(data), next.type, next.arrival});
  writing_bytes_ = next.bytes;
  queued_.pop_front();
  return &*writing_;
}

void OutboundQueue::FinishWrite() {
  if (writing_.has_value()) {
    writing_.reset();
    bytes_ -= writing_bytes_;
    writing_bytes_ = 0;
  }
}

void OutboundQueue::DropQueued() {
  queued_.clear();
  bytes_ = writing_bytes_;
}

bool OutboundQueue::Full() const {
  return frames() >= limits_.high_water_frames || bytes_ >= limits_.high_water_bytes;
}

bool OutboundQueue::Drained() const {
  return frames() <= limits_.low_water_frames && bytes_ <= limits_.high_water_bytes / 4;
}

}  // namespace parley::edge
