#include "inference/models_config.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"

namespace parley::inference {
namespace {

namespace json = boost::json;

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("models config: ", absl::string_view(what.data(), what.size())));
}

absl::StatusOr<std::string> StringMember(const json::object& object, std::string_view key,
                                         bool required) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) {
    if (required) {
      return Invalid(absl::StrCat("missing \"", std::string(key), "\""));
    }
    return std::string();
  }
  if (!value->is_string()) {
    return Invalid(absl::StrCat("\"", std::string(key), "\" must be a string"));
  }
  return std::string(value->get_string());
}

absl::StatusOr<double> NumberMember(const json::value& value, std::string_view key) {
  if (!value.is_number()) {
    return Invalid(absl::StrCat("\"", std::string(key), "\" must be a number"));
  }
  return value.to_number<double>();
}

absl::StatusOr<SamplingDefaults> ParseDefaults(const json::value& value) {
  SamplingDefaults defaults;
  if (!value.is_object()) {
    return Invalid("\"defaults\" must be an object");
  }
  for (const auto& [key, member] : value.get_object()) {
    const std::string_view name(key.data(), key.size());
    absl::StatusOr<double> number = NumberMember(member, name);
    if (!number.ok()) {
      return number.status();
    }
    // The ranges the OpenAI API accepts; a number outside them (even 1e400, which is infinity
    // here) is a mistake in the file, and converting one to int would be undefined.
    if (name == "temperature") {
      if (!(*number >= 0 && *number <= 2)) {
        return Invalid("\"temperature\" must be between 0 and 2");
      }
      defaults.temperature = *number;
    } else if (name == "top_p") {
      if (!(*number >= 0 && *number <= 1)) {
        return Invalid("\"top_p\" must be between 0 and 1");
      }
      defaults.top_p = *number;
    } else if (name == "max_tokens") {
      if (!(*number >= 1 && *number <= std::numeric_limits<int32_t>::max()) ||
          *number != std::floor(*number)) {
        return Invalid("\"max_tokens\" must be a whole number from 1 to 2147483647");
      }
      defaults.max_tokens = static_cast<int>(*number);
    } else {
      return Invalid(absl::StrCat("unknown default \"", std::string(name), "\""));
    }
  }
  return defaults;
}

absl::StatusOr<ModelConfig> ParseModel(const json::value& value) {
  if (!value.is_object()) {
    return Invalid("each model must be an object");
  }
  const json::object& object = value.get_object();
  ModelConfig model;
  absl::StatusOr<std::string> name = StringMember(object, "name", true);
  if (!name.ok()) {
    return name.status();
  }
  if (name->empty()) {
    return Invalid("a model's \"name\" may not be empty: clients ask for models by name");
  }
  model.name = *name;
  absl::StatusOr<std::string> engine = StringMember(object, "engine", true);
  if (!engine.ok()) {
    return engine.status();
  }
  model.engine = *engine;
  if (model.engine != "openai" && model.engine != "simulated") {
    return Invalid(absl::StrCat("model \"", model.name, "\": unknown engine \"", model.engine,
                                "\" (openai | simulated)"));
  }
  for (auto [key, field] :
       {std::pair{"base_url", &model.base_url}, std::pair{"upstream_model", &model.upstream_model},
        std::pair{"api_key_env", &model.api_key_env},
        std::pair{"api_key_file", &model.api_key_file}}) {
    absl::StatusOr<std::string> text = StringMember(object, key, false);
    if (!text.ok()) {
      return text.status();
    }
    *field = *text;
  }
  if (model.engine == "openai" && model.base_url.empty()) {
    return Invalid(absl::StrCat("model \"", model.name, "\": openai needs \"base_url\""));
  }
  if (!model.api_key_env.empty() && !model.api_key_file.empty()) {
    return Invalid(
        absl::StrCat("model \"", model.name, "\": give api_key_env or api_key_file, not both"));
  }
  if (const json::value* defaults = object.if_contains("defaults")) {
    absl::StatusOr<SamplingDefaults> parsed = ParseDefaults(*defaults);
    if (!parsed.ok()) {
      return parsed.status();
    }
    model.defaults = *parsed;
  }
  for (const auto& [key, member] : object) {
    static const std::set<std::string_view> kKnown = {
        "name", "engine", "base_url", "upstream_model", "api_key_env", "api_key_file", "defaults"};
    if (!kKnown.contains(std::string_view(key.data(), key.size()))) {
      return Invalid(
          absl::StrCat("model \"", model.name, "\": unknown field \"", std::string(key), "\""));
    }
  }
  return model;
}

}  // namespace

absl::StatusOr<ModelsConfig> ParseModelsConfig(std::string_view text) {
  boost::system::error_code error;
  const json::value root = json::parse(json::string_view(text.data(), text.size()), error);
  if (error) {
    return Invalid(absl::StrCat("not JSON: ", error.message()));
  }
  if (!root.is_object()) {
    return Invalid("top level must be an object");
  }
  ModelsConfig config;
  absl::StatusOr<std::string> default_model =
      StringMember(root.get_object(), "default_model", false);
  if (!default_model.ok()) {
    return default_model.status();
  }
  config.default_model = *default_model;
  const json::value* models = root.get_object().if_contains("models");
  if (models == nullptr || !models->is_array() || models->get_array().empty()) {
    return Invalid("\"models\" must be a non-empty array");
  }
  std::set<std::string> names;
  for (const json::value& value : models->get_array()) {
    absl::StatusOr<ModelConfig> model = ParseModel(value);
    if (!model.ok()) {
      return model.status();
    }
    if (!names.insert(model->name).second) {
      return Invalid(absl::StrCat("model \"", model->name, "\" appears twice"));
    }
    config.models.push_back(std::move(*model));
  }
  if (!config.default_model.empty() && !names.contains(config.default_model)) {
    return Invalid(absl::StrCat("default_model \"", config.default_model, "\" is not listed"));
  }
  return config;
}

absl::StatusOr<ModelsConfig> LoadModelsConfigFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot read models config ", path));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  return ParseModelsConfig(contents.str());
}

absl::StatusOr<std::string> ReadApiKeyFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot read API key file ", path));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  return std::string(absl::StripAsciiWhitespace(contents.str()));
}

absl::StatusOr<std::string> ResolveApiKey(const ModelConfig& model) {
  if (!model.api_key_file.empty()) {
    return ReadApiKeyFile(model.api_key_file);
  }
  if (!model.api_key_env.empty()) {
    const char* value = std::getenv(model.api_key_env.c_str());
    if (value == nullptr) {
      return absl::NotFoundError(absl::StrCat("model \"", model.name, "\": environment variable ",
                                              model.api_key_env, " is not set"));
    }
    return std::string(absl::StripAsciiWhitespace(value));
  }
  return std::string();
}

}  // namespace parley::inference

namespace parley::inference {

absl::Status AddConfiguredModels(const ModelsConfig& config, const EngineDeps& deps,
                                 ModelRegistry& registry) {
  for (const ModelConfig& model : config.models) {
    v1::Model info;
    info.set_name(model.name);
    info.set_engine(model.engine);
    info.set_is_default(model.name == config.default_model);
    if (model.engine == "simulated") {
      registry.Add(std::move(info), std::make_shared<SimulatedEngine>(*deps.io, deps.simulated));
      continue;
    }
    absl::StatusOr<UpstreamUrl> url = ParseUpstreamUrl(model.base_url);
    if (!url.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model \"", model.name, "\": ", url.status().message()));
    }
    absl::StatusOr<std::string> key = ResolveApiKey(model);
    if (!key.ok()) {
      return key.status();
    }
    info.set_upstream_model(model.upstream_model);
    OpenAiEngine::Route route{.public_name = model.name,
                              .url = *url,
                              .upstream_model = model.upstream_model,
                              .api_key = *key,
                              .defaults = model.defaults};
    registry.Add(std::move(info), std::make_shared<OpenAiEngine>(std::move(route), deps.openai,
                                                                 deps.transport, deps.metrics));
  }
  return absl::OkStatus();
}

}  // namespace parley::inference
