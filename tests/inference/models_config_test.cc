#include "inference/models_config.h"

#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"
#include "inference/io_threads.h"
#include "tests/support/child_process.h"

namespace parley::inference {
namespace {

constexpr char kConfig[] = R"({
  "default_model": "llama",
  "models": [
    {"name": "llama", "engine": "openai", "base_url": "http://127.0.0.1:8000/v1",
     "upstream_model": "meta-llama/Llama-3.1-8B-Instruct", "api_key_env": "PARLEY_TEST_KEY",
     "defaults": {"temperature": 0.2, "max_tokens": 512}},
    {"name": "cloud", "engine": "openai", "base_url": "https://api.example.test",
     "upstream_model": "gpt-4o-mini", "api_key_file": "KEYFILE"},
    {"name": "simulated", "engine": "simulated"}
  ]
})";

TEST(ModelsConfigTest, ParsesEveryField) {
  absl::StatusOr<ModelsConfig> config = ParseModelsConfig(kConfig);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->default_model, "llama");
  ASSERT_EQ(config->models.size(), 3u);
  const ModelConfig& llama = config->models[0];
  EXPECT_EQ(llama.engine, "openai");
  EXPECT_EQ(llama.base_url, "http://127.0.0.1:8000/v1");
  EXPECT_EQ(llama.upstream_model, "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_EQ(llama.api_key_env, "PARLEY_TEST_KEY");
  EXPECT_EQ(llama.defaults.temperature, 0.2);
  EXPECT_EQ(llama.defaults.max_tokens, 512);
  EXPECT_FALSE(llama.defaults.top_p.has_value());
  EXPECT_EQ(config->models[1].api_key_file, "KEYFILE");
  EXPECT_EQ(config->models[2].engine, "simulated");
}

TEST(ModelsConfigTest, RefusesBrokenConfigsWithAClearMessage) {
  for (
      const char* broken : {
          "not json",
          R"({"models": []})",
          R"({"models": [{"name": "a"}]})",
          R"({"models": [{"name": "a", "engine": "magic"}]})",
          R"({"models": [{"name": "a", "engine": "openai"}]})",
          R"({"models": [{"name": "a", "engine": "simulated"}, {"name": "a", "engine": "simulated"}]})",
          R"({"default_model": "b", "models": [{"name": "a", "engine": "simulated"}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "temperature": 1}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"top_k": 1}}]})",
          // Sampling defaults out of their ranges, or not whole where they must be; 1e400 is
          // infinity once parsed.
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"max_tokens": 1e400}}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"max_tokens": 1e20}}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"max_tokens": 0}}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"max_tokens": 2.5}}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"temperature": -1}}]})",
          R"({"models": [{"name": "a", "engine": "simulated", "defaults": {"top_p": 1.5}}]})",
          R"({"models": [{"name": "", "engine": "simulated"}]})",
      }) {
    absl::StatusOr<ModelsConfig> config = ParseModelsConfig(broken);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << broken;
    EXPECT_NE(config.status().message().find("models config"), absl::string_view::npos);
  }
}

TEST(ModelsConfigTest, BuildsARegistryWithKeysFromEnvironmentAndFile) {
  const std::string key_file = parley::testing::MakeTempDir() + "/key";
  std::ofstream(key_file) << "sk-from-file\n";
  std::string text = kConfig;
  text.replace(text.find("KEYFILE"), 7, key_file);
  absl::StatusOr<ModelsConfig> config = ParseModelsConfig(text);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(ResolveApiKey(config->models[1]).value(), "sk-from-file");

  IoThreads io(1);
  prometheus::Registry registry;
  InferenceMetrics metrics(registry);
  EngineDeps deps;
  deps.io = &io.context();
  deps.metrics = &metrics;
  deps.transport = UpstreamTransport::Create(io.context(), {}).value();
  ModelRegistry models;
  unsetenv("PARLEY_TEST_KEY");
  EXPECT_EQ(AddConfiguredModels(*config, deps, models).code(), absl::StatusCode::kNotFound);

  setenv("PARLEY_TEST_KEY", "sk-from-env", 1);
  ModelRegistry ok_models;
  ASSERT_TRUE(AddConfiguredModels(*config, deps, ok_models).ok());
  const std::vector<v1::Model> listed = ok_models.List();
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].name(), "llama");
  EXPECT_TRUE(listed[0].is_default());
  EXPECT_EQ(listed[0].upstream_model(), "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_EQ(listed[1].engine(), "openai");
  EXPECT_FALSE(listed[1].is_default());
  EXPECT_EQ(listed[2].engine(), "simulated");
  EXPECT_EQ(ok_models.Find("")->info.name(), "llama");
  EXPECT_EQ(ok_models.Find("nope"), nullptr);
}

TEST(UpstreamUrlTest, ParsesSchemesPortsAndPrefixes) {
  absl::StatusOr<UpstreamUrl> url = ParseUpstreamUrl("https://api.example.test/v1/");
  ASSERT_TRUE(url.ok());
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->port, 443);
  EXPECT_EQ(url->Target("/v1/chat/completions"), "/v1/chat/completions");
  url = ParseUpstreamUrl("http://127.0.0.1:11434/ollama");
  ASSERT_TRUE(url.ok());
  EXPECT_FALSE(url->tls);
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 11434);
  EXPECT_EQ(url->Target("/v1/chat/completions"), "/ollama/v1/chat/completions");
  url = ParseUpstreamUrl("http://[::1]:8000");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "::1");
  EXPECT_FALSE(ParseUpstreamUrl("ftp://x").ok());
  EXPECT_FALSE(ParseUpstreamUrl("http://:80").ok());
  EXPECT_FALSE(ParseUpstreamUrl("http://host:99999").ok());
}

}  // namespace
}  // namespace parley::inference
