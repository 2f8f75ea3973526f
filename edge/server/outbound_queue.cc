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

OutboundQueue::OutboundQueue(const OutboundLimits& limits, EventEncoder& encoder)
    : limits_(limits), encoder_(encoder) {}

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
      Queued().push_back(Entry{std::move(*token), EventName(event), arrival, bytes});
      bytes_ += bytes;
    }
  } else {
    EncodeQueuedTokens();
    encoded_.clear();
    encoder_.Encode(event, encoded_);
    InsertEncoded(QueuedFrames(), EventName(event), arrival);
  }
  return over_limit ? Pushed::kOverLimit : pushed;
}

OutboundQueue::Pushed OutboundQueue::PushFrame(std::string frame, absl::string_view type) {
  const bool over_limit = bytes_ > limits_.max_bytes;
  EncodeQueuedTokens();
  encoded_.clear();
  encoded_.push_back(std::move(frame));
  InsertEncoded(QueuedFrames(), type, std::nullopt);
  return over_limit ? Pushed::kOverLimit : Pushed::kQueued;
}

std::deque<OutboundQueue::Entry>& OutboundQueue::Queued() {
  if (queued_ == nullptr) {
    queued_ = std::make_unique<std::deque<Entry>>();
  }
  return *queued_;
}

void OutboundQueue::EncodeQueuedTokens() {
  if (queued_ == nullptr) {
    return;
  }
  std::deque<Entry>& queued = *queued_;
  size_t index = queued.size();
  while (index > 0 && std::holds_alternative<StreamToken>(queued[index - 1].payload)) {
    --index;
  }
  while (index < queued.size()) {
    Entry entry = std::move(queued[index]);
    queued.erase(queued.begin() + static_cast<std::ptrdiff_t>(index));
    bytes_ -= entry.bytes;
    encoded_.clear();
    encoder_.Encode(Event(std::get<StreamToken>(std::move(entry.payload))), encoded_);
    index += InsertEncoded(index, entry.type, entry.arrival);
  }
}

size_t OutboundQueue::InsertEncoded(size_t index, absl::string_view type,
                                    std::optional<Clock::time_point> arrival) {
  std::deque<Entry>& queued = Queued();
  auto at = queued.begin() + static_cast<std::ptrdiff_t>(index);
  for (std::string& frame : encoded_) {
    const size_t bytes = frame.size() + kEntryOverhead;
    at = queued.insert(at, Entry{std::move(frame), type, arrival, bytes}) + 1;
    bytes_ += bytes;
    // The data arrived once; the added latency is measured on its first frame.
    arrival.reset();
  }
  return encoded_.size();
}

OutboundQueue::Entry* OutboundQueue::MergeTarget(const std::string& message_id) {
  if (queued_ == nullptr) {
    return nullptr;
  }
  for (auto it = queued_->rbegin(); it != queued_->rend(); ++it) {
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
  if (writing_.has_value() || QueuedFrames() == 0) {
    return nullptr;
  }
  std::deque<Entry>& queued = *queued_;
  // A delta is encoded now, with whatever was merged into it; it may become no frame at all.
  while (!queued.empty() && std::holds_alternative<StreamToken>(queued.front().payload)) {
    Entry entry = std::move(queued.front());
    queued.pop_front();
    bytes_ -= entry.bytes;
    encoded_.clear();
    encoder_.Encode(Event(std::get<StreamToken>(std::move(entry.payload))), encoded_);
    InsertEncoded(0, entry.type, entry.arrival);
  }
  if (queued.empty()) {
    return nullptr;
  }
  Entry& next = queued.front();
  writing_.emplace(Frame{std::move(std::get<std::string>(next.payload)), next.type, next.arrival});
  writing_bytes_ = next.bytes;
  queued.pop_front();
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
  if (queued_ != nullptr) {
    queued_->clear();
  }
  bytes_ = writing_bytes_;
}

void OutboundQueue::ReleaseMemory() {
  if (QueuedFrames() == 0) {
    queued_.reset();
  }
  Frames().swap(encoded_);
}

bool OutboundQueue::Full() const {
  return frames() >= limits_.high_water_frames || bytes_ >= limits_.high_water_bytes;
}

bool OutboundQueue::Drained() const {
  return frames() <= limits_.low_water_frames && bytes_ <= limits_.high_water_bytes / 4;
}

}  // namespace parley::edge
