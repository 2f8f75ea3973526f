#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "persistence/store.h"

namespace parley::persistence {

struct PostgresOptions {
  // postgresql://USER@HOST:PORT/DB (a password in the URL is refused).
  std::string url;
  std::string password;
  // Connections for store calls; callers wait when all are busy.
  int pool_size = 8;
};

// Opens a PostgreSQL store: libpq with prepared statements, a bounded pool
// that replaces broken connections (so the service rides out a server
// restart), and LISTEN/NOTIFY so watchers on every replica hear of new deltas.
absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options);

}  // namespace parley::persistence
