#include "persistence/store_factory.h"

#include "gtest/gtest.h"
#include "tests/persistence/test_stores.h"

namespace parley::persistence {
namespace {

TEST(StoreFactoryTest, RefusesAPasswordInThePostgresUrl) {
  absl::StatusOr<std::unique_ptr<Store>> store =
      OpenStore("postgresql://parley:secret@127.0.0.1:1/parley", "");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StoreFactoryTest, RefusesUnknownStores) {
  EXPECT_EQ(OpenStore("mysql://x@y/z", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenStore("sqlite:", "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StoreFactoryTest, UnreachablePostgresFailsFast) {
  // Port 1 on loopback: nothing listens there.
  EXPECT_EQ(OpenStore("postgresql://parley@127.0.0.1:1/parley", "").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(StoreFactoryTest, OpensSqliteCreatingDirectories) {
  const std::string dir = testing::MakeTempDir();
  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore("sqlite:" + dir + "/a/b/c.db", "");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->kind(), "sqlite");
  store->reset();
  testing::RemoveDir(dir);
}

}  // namespace
}  // namespace parley::persistence
