#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "inference/engine.h"
#include "parley/inference/v1/inference_service.pb.h"

namespace parley::inference {

// A public model name and the engine that serves it.
struct ModelRoute {
  v1::Model info;
  std::shared_ptr<Engine> engine;
};

// Maps public model names to engines. Built once at start-up, read-only after.
class ModelRegistry {
 public:
  // The first model added, or the last one marked is_default, is the default.
  void Add(v1::Model info, std::shared_ptr<Engine> engine);

  // `name` empty selects the default; nullptr when unknown.
  const ModelRoute* Find(std::string_view name) const;

  std::vector<v1::Model> List() const;
  bool empty() const { return routes_.empty(); }

 private:
  std::vector<ModelRoute> routes_;
  size_t default_index_ = 0;
};

}  // namespace parley::inference
