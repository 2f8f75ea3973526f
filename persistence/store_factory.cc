#include "persistence/store_factory.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "persistence/stores/postgres_store.h"
#include "persistence/stores/sqlite_store.h"

namespace parley::persistence {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& spec,
                                                 const std::string& password, int pool_size) {
  if (absl::StartsWith(spec, "sqlite:")) {
    const std::string path = spec.substr(7);
    if (path.empty()) {
      if (absl::StartsWith(spec, "postgresql://") || absl::StartsWith(spec, "postgres://")) {
        return OpenPostgresStore(PostgresOptions{spec, password, pool_size});
      }
      return absl::InvalidArgumentError("--store=sqlite:PATH needs a path");
    }
    return OpenSqliteStore(path);
  }
  if (absl::StartsWith(spec, "postgresql://") || absl::StartsWith(spec, "postgres://")) {
    return OpenPostgresStore(PostgresOptions{spec, password, pool_size});
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--store must be sqlite:PATH or postgresql://USER@HOST:PORT/DB, not \"", spec, "\""));
}

}  // namespace parley::persistence
