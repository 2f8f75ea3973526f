#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "persistence/store.h"

namespace parley::persistence {

// Opens the store named by `--store`: `sqlite:PATH` or
// `postgresql://USER@HOST:PORT/DB`. The PostgreSQL password comes from
// `password` (never from the URL, which may be seen on a command line);
// `pool_size` bounds its connections.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& spec,
                                                 const std::string& password, int pool_size = 8);

}  // namespace parley::persistence
