// The inference service's --models_config file (JSON): models, engines, URLs and sampling
// defaults.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "inference/models_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<parley::inference::ModelsConfig> config = parley::inference::ParseModelsConfig(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (config.ok()) {
    for (const parley::inference::ModelConfig& model : config->models) {
      if (model.name.empty()) {
        __builtin_trap();  // Every model it accepts can be asked for by name.
      }
    }
  }
  return 0;
}
