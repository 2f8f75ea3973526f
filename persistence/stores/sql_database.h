#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::persistence {

// The little SQL surface both stores share, so the store logic (sql_store.cc)
// is written once and the SQLite and PostgreSQL files only move bytes.
// Statements use PostgreSQL's `$1, $2, …` placeholders; SQLite rewrites them.

using SqlParam = std::variant<std::nullptr_t, int64_t, std::string>;

// A fully read result: every value as text (NULL as nullopt), like libpq's text format.
class SqlRows {
 public:
  int size() const { return static_cast<int>(rows_.size()); }
  bool empty() const { return rows_.empty(); }
  bool IsNull(int row, int column) const { return !rows_[row][column].has_value(); }
  // "" for NULL.
  const std::string& Text(int row, int column) const;
  // 0 for NULL or a non-number.
  int64_t Int(int row, int column) const;

  void AddRow(std::vector<std::optional<std::string>> row) { rows_.push_back(std::move(row)); }

 private:
  std::vector<std::vector<std::optional<std::string>>> rows_;
};

// One connection inside BEGIN … COMMIT.
class SqlTransaction {
 public:
  virtual ~SqlTransaction() = default;
  virtual absl::StatusOr<SqlRows> Query(const std::string& sql,
                                        const std::vector<SqlParam>& params = {}) = 0;
};

class SqlDatabase {
 public:
  using Body = std::function<absl::Status(SqlTransaction&)>;

  virtual ~SqlDatabase() = default;

  virtual absl::string_view kind() const = 0;
  // Runs `body` in a transaction, committing when it returns OK and rolling
  // back otherwise. `write` transactions take the write lock up front (SQLite).
  // A unique-key violation surfaces as ALREADY_EXISTS, a lost connection or a
  // busy database as UNAVAILABLE.
  virtual absl::Status Transact(bool write, const Body& body) = 0;
  // Appended to a SELECT that must lock its rows until commit ("" in SQLite,
  // whose write transactions are already exclusive).
  virtual const char* ForUpdate() const = 0;
  // Tells other processes sharing the database that these messages changed;
  // delivered after commit. A no-op for an embedded database.
  virtual absl::Status NotifyChanged(SqlTransaction& transaction,
                                     const std::vector<std::string>& message_ids) = 0;
  // True when PublishEvent's events come back to this process through the
  // event listener (PostgreSQL); false when the store delivers them itself.
  virtual bool DeliversOwnEvents() const = 0;
  // Sends an encoded conversation event to every process on the database
  // (this one included); delivered after commit. A no-op for an embedded database.
  virtual absl::Status PublishEvent(SqlTransaction& transaction, const std::string& payload) = 0;
  // See Store::SetCommitListener; a database that commits each transaction alone never calls it.
  virtual void SetCommitListener(std::function<void(size_t transactions)> /*listener*/) {}
  // Receives other processes' NotifyChanged ids and everyone's PublishEvent
  // payloads (never called for SQLite).
  virtual void SetRemoteListeners(std::function<void(const std::string&)> change_listener,
                                  std::function<void(const std::string&)> event_listener) = 0;
};

}  // namespace parley::persistence
