#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "inference/engines/openai_engine.h"
#include "inference/engines/openai_protocol.h"
#include "inference/engines/simulated_engine.h"
#include "inference/model_registry.h"

namespace parley::inference {

// One public model in the routing file (format in docs/inference.md).
struct ModelConfig {
  std::string name;
  std::string engine;  // "openai" or "simulated"
  std::string base_url;
  std::string upstream_model;
  std::string api_key_env;   // Name of an environment variable holding the key.
  std::string api_key_file;  // Or a file holding it.
  SamplingDefaults defaults;
};

struct ModelsConfig {
  std::string default_model;  // Empty: the first model.
  std::vector<ModelConfig> models;
};

absl::StatusOr<ModelsConfig> ParseModelsConfig(std::string_view json);
absl::StatusOr<ModelsConfig> LoadModelsConfigFile(const std::string& path);

// The API key a model names: from its environment variable or file (trimmed).
// Empty when it names none; an error when the named source is missing.
absl::StatusOr<std::string> ResolveApiKey(const ModelConfig& model);

absl::StatusOr<std::string> ReadApiKeyFile(const std::string& path);

}  // namespace parley::inference

namespace parley::inference {

// What engines need to be built from a config.
struct EngineDeps {
  boost::asio::io_context* io = nullptr;
  SimulatedEngine::Options simulated;
  OpenAiEngine::Options openai;
  std::shared_ptr<UpstreamTransport> transport;
  InferenceMetrics* metrics = nullptr;
};

// Builds one engine per configured model into `registry`; fails on a bad URL
// or a missing API key so a broken deployment stops at start-up.
absl::Status AddConfiguredModels(const ModelsConfig& config, const EngineDeps& deps,
                                 ModelRegistry& registry);

}  // namespace parley::inference
