#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "persistence/stores/group_commit.h"
#include "persistence/stores/sql_database.h"

namespace parley::persistence {

class SqliteConnection;

// SQLite under SqlStore: one writer connection, its write transactions committed in groups
// (GroupCommit: those that queue during a commit share the next one and its sync), and reader
// connections beside it (WAL).
class SqliteDatabase final : public SqlDatabase {
 public:
  // Most write transactions committed together, about as many as the store threads (64 by
  // default) can queue at once; a larger burst takes one more commit.
  static constexpr size_t kMaxWritesPerCommit = 64;

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
  void SetCommitListener(std::function<void(size_t transactions)> listener) override {
    writes_.SetObserver(std::move(listener));
  }
  void SetRemoteListeners(std::function<void(const std::string&)>,
                          std::function<void(const std::string&)>) override {}

  // Write transactions waiting for the commit in progress.
  size_t queued_writes() const { return writes_.queued(); }

 private:
  SqliteDatabase() = default;

  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Connect(const std::string& path);
  static absl::Status RunIn(SqliteConnection& connection, const char* begin, const Body& body);
  // One batch of writes (GroupCommit runs one at a time): alone, a transaction of its own; more,
  // one transaction with a savepoint each, so that a write that fails is undone alone.
  std::vector<absl::Status> CommitBatch(const std::vector<const Body*>& bodies);

  absl::Mutex writer_mu_;
  std::unique_ptr<SqliteConnection> writer_ ABSL_GUARDED_BY(writer_mu_);
  GroupCommit<Body> writes_{kMaxWritesPerCommit, [this](const std::vector<const Body*>& bodies) {
                              return CommitBatch(bodies);
                            }};
  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<SqliteConnection>> readers_;
  std::vector<SqliteConnection*> free_readers_ ABSL_GUARDED_BY(readers_mu_);
};

}  // namespace parley::persistence
