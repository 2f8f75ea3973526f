#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "inference/engine.h"

namespace parley::inference {

// Answers in plain sentences that say it is simulated and refer to the question, paced like a real
// model. It is the default engine for local runs and the stable upstream for
// benchmarks: the same last user message (and seed) always yields the same
// words, each one token. Pacing uses timers on the shared io_context, so
// thousands of concurrent streams cost no threads.
class SimulatedEngine : public Engine {
 public:
  struct Options {
    absl::Duration time_to_first_token = absl::Milliseconds(200);
    // 0 sends every token as soon as the reader is ready for it.
    double tokens_per_second = 50;
    // Upper bound on completion tokens; a request's own max_tokens may lower it.
    int max_tokens = 512;
  };

  SimulatedEngine(boost::asio::io_context& io, Options options);

  std::shared_ptr<Generation> Start(const v1::GenerateRequest& request,
                                    absl::Time deadline) override;

  // The full reply text for `request` when nothing cuts it short (for tests).
  static std::string NaturalReply(const v1::GenerateRequest& request);

 private:
  boost::asio::io_context& io_;
  Options options_;
};

}  // namespace parley::inference
