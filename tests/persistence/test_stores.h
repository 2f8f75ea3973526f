#pragma once

#include <memory>
#include <string>

#include "persistence/store.h"

namespace parley::persistence::testing {

// A fresh directory under $TMPDIR (or /tmp), removed by RemoveDir.
std::string MakeTempDir();
void RemoveDir(const std::string& dir);

// A unique user id, so tests sharing one database never see each other's data.
std::string UniqueUser(const std::string& prefix);

// "sqlite": a new database file under `dir`. "postgresql": the server named
// by PARLEY_TEST_POSTGRES_URL (set by with_postgres.sh); the test fails if
// that is missing, so the suite never passes without a database behind it.
std::unique_ptr<Store> OpenTestStore(const std::string& kind, const std::string& dir);

// The --store value for a real parley-persistence on that store.
std::string StoreSpec(const std::string& kind, const std::string& dir);

}  // namespace parley::persistence::testing
