#include "persistence/stores/postgres_store.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "persistence/stores/sql_database.h"
#include "persistence/stores/sql_store.h"

namespace parley::persistence {
namespace {

constexpr char kChannel[] = "parley_message_changed";
// Conversation events (base64 of a serialized v1.ConversationEvent).
constexpr char kEventChannel[] = "parley_conversation_event";
// NOTIFY payloads must stay under 8000 bytes.
constexpr size_t kMaxNotifyPayload = 7000;
// Arbitrary constant naming the migration lock.
constexpr char kMigrationLock[] = "SELECT pg_advisory_xact_lock(7260442019)";

absl::StatusOr<PGconn*> Connect(const PostgresOptions& options) {
  const char* keywords[] = {"dbname",           "password", "connect_timeout",
                            "application_name", "options",  nullptr};
  const char* values[] = {options.url.c_str(),
                          options.password.empty() ? nullptr : options.password.c_str(),
                          "5",
                          "parley-persistence",
                          "-c client_min_messages=warning",
                          nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(absl::StrCat(
        "cannot connect to PostgreSQL: ", conn != nullptr ? PQerrorMessage(conn) : "no memory"));
    PQfinish(conn);
    return status;
  }
  return conn;
}

absl::Status ResultError(PGconn* conn, PGresult* result) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = PQerrorMessage(conn);
  while (!message.empty() && message.back() == '\n') {
    message.pop_back();
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL connection lost: ", message));
  }
  const std::string code = state != nullptr ? state : "";
  if (code == "23505") {
    return absl::AlreadyExistsError(message);
  }
  if (code == "40001" || code == "40P01") {
    return absl::AbortedError(message);
  }
  if (absl::StartsWith(code, "08") || code == "57P01") {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(absl::StrCat("PostgreSQL: ", message));
}

// One libpq connection and the statements prepared on it.
class Connection : public SqlTransaction {
 public:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  ~Connection() override { PQfinish(conn_); }

  bool healthy() const { return PQstatus(conn_) == CONNECTION_OK; }

  absl::StatusOr<SqlRows> Query(const std::string& sql,
                                const std::vector<SqlParam>& params) override {
    PGresult* result = nullptr;
    if (params.empty()) {
      result = PQexec(conn_, sql.c_str());
    } else {
      absl::StatusOr<std::string> name = Prepare(sql, static_cast<int>(params.size()));
      if (!name.ok()) {
        return name.status();
      }
      std::vector<std::string> numbers(params.size());
      std::vector<const char*> values(params.size(), nullptr);
      std::vector<int> lengths(params.size(), 0);
      for (size_t i = 0; i < params.size(); ++i) {
        if (const auto* number = std::get_if<int64_t>(&params[i])) {
          numbers[i] = absl::StrCat(*number);
          values[i] = numbers[i].c_str();
        } else if (const auto* text = std::get_if<std::string>(&params[i])) {
          values[i] = text->c_str();
          lengths[i] = static_cast<int>(text->size());
        }
      }
      result = PQexecPrepared(conn_, name->c_str(), static_cast<int>(params.size()), values.data(),
                              lengths.data(), /*paramFormats=*/nullptr,
                              /*resultFormat=*/0);
    }
    const ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      absl::Status error = ResultError(conn_, result);
      PQclear(result);
      return error;
    }
    SqlRows rows;
    const int columns = PQnfields(result);
    for (int r = 0; r < PQntuples(result); ++r) {
      std::vector<std::optional<std::string>> row(columns);
      for (int c = 0; c < columns; ++c) {
        if (!PQgetisnull(result, r, c)) {
          row[c] = std::string(PQgetvalue(result, r, c), PQgetlength(result, r, c));
        }
      }
      rows.AddRow(std::move(row));
    }
    PQclear(result);
    return rows;
  }

 private:
  absl::StatusOr<std::string> Prepare(const std::string& sql, int params) {
    auto it = prepared_.find(sql);
    if (it != prepared_.end()) {
      return it->second;
    }
    std::string name = absl::StrCat("s", prepared_.size());
    PGresult* result = PQprepare(conn_, name.c_str(), sql.c_str(), params, nullptr);
    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
      absl::Status error = ResultError(conn_, result);
      PQclear(result);
      return error;
    }
    PQclear(result);
    prepared_.emplace(sql, name);
    return name;
  }

  PGconn* conn_;
  std::unordered_map<std::string, std::string> prepared_;
};

// Follows NOTIFYs from every replica on its own connection, reconnecting as
// needed; after a reconnect it reports "anything may have changed" (empty id)
// because notifications sent meanwhile are lost.
class Listener {
 public:
  Listener(PostgresOptions options, std::function<void(const std::string&)> callback,
           std::function<void(const std::string&)> event_callback)
      : options_(std::move(options)),
        callback_(std::move(callback)),
        event_callback_(std::move(event_callback)),
        wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        thread_([this] { Run(); }) {
    // Serve only once notifications flow, so no commit made after start-up is missed.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&listening_), absl::Seconds(10));
  }

  ~Listener() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
    thread_.join();
    close(wake_fd_);
  }

 private:
  bool Stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  void Run() {
    bool first = true;
    while (!Stopping()) {
      absl::StatusOr<PGconn*> conn = Connect(options_);
      if (!conn.ok()) {
        common::LogWarning("postgresql listener cannot connect",
                           {{"error", std::string(conn.status().message())}});
        Wait(absl::Seconds(1));
        continue;
      }
      PGresult* result =
          PQexec(*conn, absl::StrCat("LISTEN ", kChannel, "; LISTEN ", kEventChannel).c_str());
      const bool listening = PQresultStatus(result) == PGRES_COMMAND_OK;
      PQclear(result);
      if (listening) {
        {
          absl::MutexLock lock(&mu_);
          listening_ = true;
        }
        if (!first && callback_) {
          callback_("");
        }
        first = false;
        Follow(*conn);
      }
      PQfinish(*conn);
      Wait(absl::Milliseconds(200));
    }
  }

  // Returns when the connection breaks or the listener stops.
  void Follow(PGconn* conn) {
    while (!Stopping()) {
      pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      if (poll(fds, 2, 1000) < 0) {
        continue;
      }
      if (!PQconsumeInput(conn)) {
        return;
      }
      while (PGnotify* notify = PQnotifies(conn)) {
        if (absl::string_view(notify->relname) == kEventChannel) {
          if (event_callback_) {
            event_callback_(notify->extra);
          }
        } else if (callback_) {
          for (absl::string_view id : absl::StrSplit(notify->extra, ',', absl::SkipEmpty())) {
            callback_(std::string(id));
          }
        }
        PQfreemem(notify);
      }
      if (PQstatus(conn) != CONNECTION_OK) {
        return;
      }
    }
  }

  void Wait(absl::Duration duration) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), duration);
  }

  const PostgresOptions options_;
  const std::function<void(const std::string&)> callback_;
  const std::function<void(const std::string&)> event_callback_;
  const int wake_fd_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class PostgresDatabase : public SqlDatabase {
 public:
  explicit PostgresDatabase(PostgresOptions options) : options_(std::move(options)) {}

  absl::string_view kind() const override { return "postgresql"; }
  const char* ForUpdate() const override { return " FOR UPDATE"; }

  absl::Status Transact(bool write, const Body& body) override {
    absl::Status status;
    // Idle connections die with a server restart: each attempt that fails
    // for a lost connection retires one, so the pool refills with live ones.
    // Conflicts between replicas (deadlock, serialization) are retried too.
    for (int attempt = 0; attempt <= options_.pool_size + 1; ++attempt) {
      absl::StatusOr<std::unique_ptr<Connection>> connection = Acquire();
      if (!connection.ok()) {
        return connection.status();
      }
      bool began = false;
      status = RunIn(**connection, write, body, &began);
      const bool healthy = (*connection)->healthy();
      Release(*std::move(connection), healthy);
      const bool retry = (status.code() == absl::StatusCode::kUnavailable && !began) ||
                         status.code() == absl::StatusCode::kAborted;
      if (!retry) {
        break;
      }
    }
    return status;
  }

  absl::Status NotifyChanged(SqlTransaction& transaction,
                             const std::vector<std::string>& message_ids) override {
    std::string payload;
    for (size_t i = 0; i <= message_ids.size(); ++i) {
      const bool flush =
          i == message_ids.size() || payload.size() + message_ids[i].size() + 1 > kMaxNotifyPayload;
      if (flush && !payload.empty()) {
        absl::Status status =
            transaction.Query(absl::StrCat("SELECT pg_notify('", kChannel, "', $1)"), {payload})
                .status();
        if (!status.ok()) {
          return status;
        }
        payload.clear();
      }
      if (i < message_ids.size()) {
        absl::StrAppend(&payload, payload.empty() ? "" : ",", message_ids[i]);
      }
    }
    return absl::OkStatus();
  }

  bool DeliversOwnEvents() const override { return true; }

  absl::Status PublishEvent(SqlTransaction& transaction, const std::string& payload) override {
    return transaction.Query(absl::StrCat("SELECT pg_notify('", kEventChannel, "', $1)"), {payload})
        .status();
  }

  void SetRemoteListeners(std::function<void(const std::string&)> change_listener,
                          std::function<void(const std::string&)> event_listener) override {
    listener_.reset();
    if (change_listener || event_listener) {
      listener_ = std::make_unique<Listener>(options_, std::move(change_listener),
                                             std::move(event_listener));
    }
  }

  // Fails fast at start-up on a bad URL or password.
  absl::Status Check() {
    absl::StatusOr<std::unique_ptr<Connection>> connection = Acquire();
    if (!connection.ok()) {
      return connection.status();
    }
    Release(*std::move(connection), true);
    return absl::OkStatus();
  }

 private:
  static absl::Status RunIn(Connection& connection, bool write, const Body& body, bool* began) {
    absl::StatusOr<SqlRows> begin =
        connection.Query(write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", {});
    if (!begin.ok()) {
      return begin.status();
    }
    *began = true;
    absl::Status status = body(connection);
    if (status.ok()) {
      status = connection.Query("COMMIT", {}).status();
    } else {
      connection.Query("ROLLBACK", {}).IgnoreError();
    }
    return status;
  }

  absl::StatusOr<std::unique_ptr<Connection>> Acquire() {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](PostgresDatabase* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->idle_.empty() || self->open_ < self->options_.pool_size;
          },
          this));
      if (!idle_.empty()) {
        std::unique_ptr<Connection> connection = std::move(idle_.back());
        idle_.pop_back();
        return connection;
      }
      ++open_;
    }
    absl::StatusOr<PGconn*> conn = Connect(options_);
    if (!conn.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      return conn.status();
    }
    return std::make_unique<Connection>(*conn);
  }

  void Release(std::unique_ptr<Connection> connection, bool healthy) {
    if (!healthy) {
      connection.reset();
    }
    absl::MutexLock lock(&mu_);
    if (connection != nullptr) {
      idle_.push_back(std::move(connection));
    } else {
      --open_;
    }
  }

  const PostgresOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + in use
  std::unique_ptr<Listener> listener_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  // postgresql://USER:PASSWORD@… would put the password on a command line.
  const size_t scheme = options.url.find("://");
  const size_t at = options.url.find('@');
  if (scheme != std::string::npos && at != std::string::npos &&
      options.url.substr(scheme + 3, at - scheme - 3).find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        "put the PostgreSQL password in PARLEY_STORE_PASSWORD or --store_password_file, "
        "not in --store");
  }
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError("the PostgreSQL pool needs at least one connection");
  }
  auto database = std::make_unique<PostgresDatabase>(options);
  if (absl::Status status = database->Check(); !status.ok()) {
    return status;
  }
  return SqlStore::Create(
      std::move(database),
      SchemaMigrations(
          {.serial_key = "BIGSERIAL PRIMARY KEY", .int64 = "BIGINT", .keyed_table = ""}),
      kMigrationLock);
}

}  // namespace parley::persistence
