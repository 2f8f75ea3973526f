#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "inference/engine.h"

namespace parley::inference::testing {

// Pulls one step from a generation and waits for it (tests only).
inline Step NextStep(Generation& generation) {
  auto done = std::make_shared<absl::Notification>();
  auto step = std::make_shared<Step>(Step::End(absl::DeadlineExceededError("test timed out")));
  generation.Next([done, step](Step result) {
    *step = std::move(result);
    done->Notify();
  });
  done->WaitForNotificationWithTimeout(absl::Seconds(30));
  return *step;
}

// Everything a generation produced, in order, and how it ended.
struct Collected {
  std::vector<v1::GenerateResponse> chunks;
  absl::Status status;

  std::string Text() const {
    std::string text;
    for (const v1::GenerateResponse& chunk : chunks) {
      text += chunk.text_delta().text();
    }
    return text;
  }
  int TextDeltas() const {
    int count = 0;
    for (const v1::GenerateResponse& chunk : chunks) {
      count += chunk.has_text_delta() ? 1 : 0;
    }
    return count;
  }
};

inline Collected CollectAll(Generation& generation) {
  Collected collected;
  for (;;) {
    Step step = NextStep(generation);
    if (!step.chunk) {
      collected.status = step.status;
      return collected;
    }
    collected.chunks.push_back(std::move(*step.chunk));
  }
}

}  // namespace parley::inference::testing
