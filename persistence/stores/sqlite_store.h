#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "persistence/store.h"

namespace parley::persistence {

// Opens (creating as needed, parent directories included) the SQLite database
// at `path` and migrates its schema. WAL with synchronous=FULL: a committed
// transaction survives a crash of the process or the machine.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace parley::persistence
