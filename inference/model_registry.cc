#include "inference/model_registry.h"

namespace parley::inference {

void ModelRegistry::Add(v1::Model info, std::shared_ptr<Engine> engine) {
  if (info.is_default()) {
    default_index_ = routes_.size();
  }
  routes_.push_back(ModelRoute{std::move(info), std::move(engine)});
}

const ModelRoute* ModelRegistry::Find(std::string_view name) const {
  if (name.empty()) {
    return routes_.empty() ? nullptr : &routes_[default_index_];
  }
  for (const ModelRoute& route : routes_) {
    if (route.info.name() == name) {
      return &route;
    }
  }
  return nullptr;
}

std::vector<v1::Model> ModelRegistry::List() const {
  std::vector<v1::Model> models;
  for (size_t i = 0; i < routes_.size(); ++i) {
    models.push_back(routes_[i].info);
    models.back().set_is_default(i == default_index_);
  }
  return models;
}

}  // namespace parley::inference
