#pragma once

#include <chrono>
#include <functional>
#include <optional>

#include "edge/protocol/messages.h"

namespace parley::edge {

// Where a turn's events go: the client connection, in whatever dialect it
// speaks. Every method is called on the connection's strand.
class EventSink {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~EventSink() = default;

  // Queues an event for the client. `arrival` is when the data it carries came
  // from inference, so the sink can measure the latency it adds.
  virtual void Emit(Event event, std::optional<Clock::time_point> arrival) = 0;

  // False while the outbound queue is above its high-water mark: producers
  // should stop pulling from upstream until `resume` is called.
  virtual bool Writable() const = 0;
  virtual void WhenWritable(std::function<void()> resume) = 0;
};

}  // namespace parley::edge
