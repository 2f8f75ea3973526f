#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "inference/engine.h"
#include "inference/engines/openai_protocol.h"
#include "inference/engines/upstream_connection.h"
#include "inference/metrics.h"

namespace parley::inference {

// Streams replies from an OpenAI-compatible server (vLLM, llama.cpp server,
// Ollama, TGI, LM Studio, OpenAI) with POST /v1/chat/completions and SSE.
// One engine serves one public model. Cancelling a generation closes its
// upstream connection at once, so the upstream stops generating too. Failures
// before the upstream's first reply byte are retried with back-off; nothing is
// retried once a reply started.
class OpenAiEngine : public Engine {
 public:
  struct Route {
    std::string public_name;  // Labels metrics.
    UpstreamUrl url;
    std::string upstream_model;
    std::string api_key;  // Empty sends no Authorization header. Never logged.
    SamplingDefaults defaults;
  };

  struct Options {
    absl::Duration connect_timeout = absl::Seconds(5);
    // Longest wait for the response head and between two reads of the body.
    absl::Duration max_silence = absl::Seconds(60);
    int max_retries = 2;
    absl::Duration retry_backoff = absl::Milliseconds(250);  // Doubles per retry.
    absl::Duration max_retry_wait = absl::Seconds(30);       // Caps Retry-After too.
  };

  OpenAiEngine(Route route, Options options, std::shared_ptr<UpstreamTransport> transport,
               InferenceMetrics* metrics);

  std::shared_ptr<Generation> Start(const v1::GenerateRequest& request,
                                    absl::Time deadline) override;

 private:
  const std::shared_ptr<const Route> route_;
  const Options options_;
  const std::shared_ptr<UpstreamTransport> transport_;
  InferenceMetrics* const metrics_;
};

}  // namespace parley::inference
