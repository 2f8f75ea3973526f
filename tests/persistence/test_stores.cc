#include "tests/persistence/test_stores.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "persistence/store_factory.h"

namespace parley::persistence::testing {

std::string MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/parley-persist-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  return pattern;
}

void RemoveDir(const std::string& dir) {
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

std::string UniqueUser(const std::string& prefix) {
  thread_local absl::BitGen bits;
  return absl::StrCat(prefix, "-", absl::Hex(absl::Uniform<uint64_t>(bits)));
}

std::string StoreSpec(const std::string& kind, const std::string& dir) {
  if (kind == "sqlite") {
    return absl::StrCat("sqlite:", dir, "/data/parley.db");
  }
  const char* url = std::getenv("PARLEY_TEST_POSTGRES_URL");
  EXPECT_NE(url, nullptr) << "PARLEY_TEST_POSTGRES_URL is not set: run through with_postgres.sh";
  return url != nullptr ? url : "postgresql://missing@127.0.0.1:1/missing";
}

std::unique_ptr<Store> OpenTestStore(const std::string& kind, const std::string& dir) {
  const char* password = std::getenv("PARLEY_STORE_PASSWORD");
  absl::StatusOr<std::unique_ptr<Store>> store =
      OpenStore(StoreSpec(kind, dir), password != nullptr ? password : "");
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

}  // namespace parley::persistence::testing
