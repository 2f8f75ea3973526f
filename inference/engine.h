#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "parley/inference/v1/inference_service.pb.h"

namespace parley::inference {

// One step of a generation: the next chunk, or the end of the stream.
struct Step {
  // Set while the stream goes on; empty at the end.
  std::optional<v1::GenerateResponse> chunk;
  // Why the stream ended (OK for a normal end); meaningful only when `chunk` is empty.
  absl::Status status;

  static Step Chunk(v1::GenerateResponse chunk) { return Step{std::move(chunk), absl::OkStatus()}; }
  static Step End(absl::Status status) { return Step{std::nullopt, std::move(status)}; }
};

using StepCallback = std::function<void(Step)>;

// A generation in flight. It is pull-based: the caller asks for the next chunk
// only once it has written the previous one, so a slow reader slows the engine
// down instead of growing a buffer (this is how gRPC flow control reaches the
// model). A normal stream is: deltas…, one usage chunk, one finish chunk, end(OK).
// A failed stream may carry a usage chunk before its end(error).
class Generation {
 public:
  virtual ~Generation() = default;

  // Requests the next step. `callback` runs exactly once, never inside this
  // call, on an engine thread; it must not block. At most one request may be
  // outstanding, and none after the end was delivered.
  virtual void Next(StepCallback callback) = 0;

  // Stops the generation now: timers stop, upstream connections close. An
  // outstanding or later Next() ends with CANCELLED. Thread-safe and idempotent.
  virtual void Cancel() = 0;
};

// Turns requests into generations. One Engine serves one public model; it must
// never block the calling thread (gRPC's), so all work runs on its own executor.
class Engine {
 public:
  virtual ~Engine() = default;

  // Starts generating the reply to `request`. Past `deadline` the generation
  // ends with DEADLINE_EXCEEDED.
  virtual std::shared_ptr<Generation> Start(const v1::GenerateRequest& request,
                                            absl::Time deadline) = 0;
};

}  // namespace parley::inference
