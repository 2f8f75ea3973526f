#include "persistence/stores/sqlite_store.h"

#include <sqlite3.h>

#include <filesystem>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "persistence/stores/sql_database.h"
#include "persistence/stores/sql_store.h"
#include "persistence/stores/sqlite_database.h"

namespace parley::persistence {
namespace {

// Readers run beside the single writer thanks to WAL.
constexpr int kReaderConnections = 2;

// `$12` → `?12`: same numbering, SQLite's spelling.
std::string ToSqlitePlaceholders(const std::string& sql) {
  std::string out = sql;
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && absl::ascii_isdigit(static_cast<unsigned char>(out[i + 1]))) {
      out[i] = '?';
    }
  }
  return out;
}

absl::Status SqliteError(sqlite3* db, int code, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", sqlite3_errmsg(db));
  switch (code) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return absl::AlreadyExistsError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

// One sqlite3 handle and its prepared statements; used by one thread at a time.
class SqliteConnection : public SqlTransaction {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  ~SqliteConnection() override {
    for (auto& [sql, statement] : statements_) {
      sqlite3_finalize(statement);
    }
    sqlite3_close_v2(db_);
  }

  absl::StatusOr<SqlRows> Query(const std::string& sql,
                                const std::vector<SqlParam>& params) override {
    absl::StatusOr<sqlite3_stmt*> prepared = Prepare(sql);
    if (!prepared.ok()) {
      return prepared.status();
    }
    sqlite3_stmt* statement = *prepared;
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      if (const auto* number = std::get_if<int64_t>(&params[i])) {
        sqlite3_bind_int64(statement, index, *number);
      } else if (const auto* text = std::get_if<std::string>(&params[i])) {
        sqlite3_bind_text(statement, index, text->data(), static_cast<int>(text->size()),
                          SQLITE_STATIC);
      } else {
        sqlite3_bind_null(statement, index);
      }
    }
    SqlRows rows;
    int code;
    const int columns = sqlite3_column_count(statement);
    while ((code = sqlite3_step(statement)) == SQLITE_ROW) {
      std::vector<std::optional<std::string>> row(columns);
      for (int c = 0; c < columns; ++c) {
        if (sqlite3_column_type(statement, c) != SQLITE_NULL) {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, c));
          row[c] = std::string(text, sqlite3_column_bytes(statement, c));
        }
      }
      rows.AddRow(std::move(row));
    }
    const int extended = sqlite3_extended_errcode(db_);
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
    if (code != SQLITE_DONE) {
      return SqliteError(db_, extended, "sqlite step");
    }
    return rows;
  }

  absl::Status Exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      absl::Status status = SqliteError(db_, sqlite3_extended_errcode(db_),
                                        absl::StrCat("sqlite ", sql.substr(0, 40)));
      sqlite3_free(error);
      return status;
    }
    return absl::OkStatus();
  }

  // False once SQLite rolled the transaction back by itself (a full disk, an I/O error).
  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  absl::StatusOr<sqlite3_stmt*> Prepare(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) {
      return it->second;
    }
    const std::string native = ToSqlitePlaceholders(sql);
    sqlite3_stmt* statement = nullptr;
    const int code = sqlite3_prepare_v3(db_, native.c_str(), static_cast<int>(native.size()),
                                        SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
    if (code != SQLITE_OK) {
      return SqliteError(db_, code, "sqlite prepare");
    }
    statements_.emplace(sql, statement);
    return statement;
  }

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(const std::string& path) {
  auto database = std::unique_ptr<SqliteDatabase>(new SqliteDatabase());
  absl::StatusOr<std::unique_ptr<SqliteConnection>> writer = Connect(path);
  if (!writer.ok()) {
    return writer.status();
  }
  database->writer_ = *std::move(writer);
  for (int i = 0; i < kReaderConnections; ++i) {
    absl::StatusOr<std::unique_ptr<SqliteConnection>> reader = Connect(path);
    if (!reader.ok()) {
      return reader.status();
    }
    database->free_readers_.push_back(reader->get());
    database->readers_.push_back(*std::move(reader));
  }
  return database;
}

SqliteDatabase::~SqliteDatabase() = default;

absl::Status SqliteDatabase::Transact(bool write, const Body& body) {
  if (write) {
    return writes_.Run(body);
  }
  SqliteConnection* reader = nullptr;
  {
    absl::MutexLock lock(&readers_mu_);
    readers_mu_.Await(absl::Condition(
        +[](std::vector<SqliteConnection*>* free) { return !free->empty(); }, &free_readers_));
    reader = free_readers_.back();
    free_readers_.pop_back();
  }
  absl::Status status = RunIn(*reader, "BEGIN", body);
  absl::MutexLock lock(&readers_mu_);
  free_readers_.push_back(reader);
  return status;
}

absl::StatusOr<std::unique_ptr<SqliteConnection>> SqliteDatabase::Connect(const std::string& path) {
  sqlite3* db = nullptr;
  const int code = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (code != SQLITE_OK) {
    absl::Status status =
        absl::UnavailableError(absl::StrCat("cannot open SQLite database ", path, ": ",
                                            db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close_v2(db);
    return status;
  }
  auto connection = std::make_unique<SqliteConnection>(db);
  // Another process (a restarting replica) may hold the write lock briefly.
  sqlite3_busy_timeout(db, 5000);
  // FULL syncs the WAL on every commit: acknowledged means on disk. The savepoints of a group
  // commit keep their undo pages in memory, not in a temporary file.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON", "PRAGMA temp_store=MEMORY"}) {
    if (absl::Status status = connection->Exec(pragma); !status.ok()) {
      return status;
    }
  }
  return connection;
}

absl::Status SqliteDatabase::RunIn(SqliteConnection& connection, const char* begin,
                                   const Body& body) {
  if (absl::Status status = connection.Exec(begin); !status.ok()) {
    return status;
  }
  absl::Status status = body(connection);
  if (status.ok()) {
    status = connection.Exec("COMMIT");
  }
  if (!status.ok()) {
    connection.Exec("ROLLBACK").IgnoreError();
  }
  return status;
}

std::vector<absl::Status> SqliteDatabase::CommitBatch(const std::vector<const Body*>& bodies) {
  absl::MutexLock lock(&writer_mu_);
  SqliteConnection& connection = *writer_;
  if (bodies.size() == 1) {
    return {RunIn(connection, "BEGIN IMMEDIATE", *bodies.front())};
  }
  std::vector<absl::Status> statuses(bodies.size());
  size_t next = 0;
  while (next < bodies.size()) {
    const size_t first = next;  // The writes from here on share this transaction.
    // The writes of this transaction that succeeded so far fail with it.
    auto lose_transaction = [&](const absl::Status& why) {
      for (size_t i = first; i < next; ++i) {
        if (statuses[i].ok()) {
          statuses[i] = why;
        }
      }
    };
    if (absl::Status begun = connection.Exec("BEGIN IMMEDIATE"); !begun.ok()) {
      for (; next < bodies.size(); ++next) {
        statuses[next] = begun;
      }
      return statuses;
    }
    bool lost = false;
    while (next < bodies.size() && !lost) {
      absl::Status status = connection.Exec("SAVEPOINT batched_write");
      if (status.ok()) {
        status = (*bodies[next])(connection);
        status = status.ok() ? connection.Exec("RELEASE batched_write") : status;
      }
      if (!status.ok() && connection.InTransaction()) {
        // Undoes this write only; the others of the transaction stay.
        if (absl::Status undone = connection.Exec("ROLLBACK TO batched_write"); undone.ok()) {
          connection.Exec("RELEASE batched_write").IgnoreError();
        } else {
          connection.Exec("ROLLBACK").IgnoreError();  // What this write did cannot be told apart.
        }
      }
      lost = !connection.InTransaction();
      statuses[next++] = std::move(status);
      if (lost) {
        lose_transaction(absl::UnavailableError(
            absl::StrCat("the transaction was rolled back: ", statuses[next - 1].message())));
      }
    }
    if (!lost) {
      if (absl::Status committed = connection.Exec("COMMIT"); !committed.ok()) {
        connection.Exec("ROLLBACK").IgnoreError();
        lose_transaction(committed);
      }
    }
  }
  return statuses;
}

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code error;
    std::filesystem::create_directories(parent, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot create directory ", parent.string(), ": ", error.message()));
    }
  }
  absl::StatusOr<std::unique_ptr<SqliteDatabase>> database = SqliteDatabase::Open(path);
  if (!database.ok()) {
    return database.status();
  }
  return SqlStore::Create(*std::move(database),
                          SchemaMigrations({.serial_key = "INTEGER PRIMARY KEY AUTOINCREMENT",
                                            .int64 = "INTEGER",
                                            .keyed_table = " WITHOUT ROWID"}),
                          /*migration_lock_sql=*/"");
}

}  // namespace parley::persistence
