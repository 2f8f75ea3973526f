#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "persistence/stores/sql_database.h"

namespace parley::persistence {

class SqliteConnection;

// SQLite under SqlStore: one writer connection, and reader connections beside it (WAL).
class SqliteDatabase final : public SqlDatabase {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const std::string& path);
  ~SqliteDatabase() override;

  absl::string_view kind() const override { return "sqlite"; }
  const char* ForUpdate() const override { return ""; }
  absl::Status Transact(bool write, const Body& body) override;
  absl::Status NotifyChanged(SqlTransaction&, const std::vector<std::string>&) override {
    return absl::OkStatus();
  }
  bool DeliversOwnEvents() const override { return false; }
  absl::Status PublishEvent(SqlTransaction&, const std::string&) override {
    return absl::OkStatus();
  }
  void SetRemoteListeners(std::function<void(const std::string&)>,
                          std::function<void(const std::string&)>) override {}

 private:
  SqliteDatabase() = default;

  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Connect(const std::string& path);
  static absl::Status RunIn(SqliteConnection& connection, const char* begin, const Body& body);

  absl::Mutex writer_mu_;
  std::unique_ptr<SqliteConnection> writer_ ABSL_GUARDED_BY(writer_mu_);
  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<SqliteConnection>> readers_;
  std::vector<SqliteConnection*> free_readers_ ABSL_GUARDED_BY(readers_mu_);
};

}  // namespace parley::persistence
