#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "persistence/store.h"
#include "persistence/stores/sql_database.h"

namespace parley::persistence {

// Where the two databases spell the same schema differently.
struct SqlDialect {
  std::string serial_key;   // An auto-incrementing integer primary key column type.
  std::string int64;        // A 64-bit integer column type.
  std::string keyed_table;  // Suffix for a table that is only ever read by its primary key.
};

// Every schema version, oldest first; each is a list of statements.
std::vector<std::vector<std::string>> SchemaMigrations(const SqlDialect& dialect);

// The Store contract written once in SQL that SQLite and PostgreSQL both
// accept; the two database files supply the connection handling and DDL.
class SqlStore : public Store {
 public:
  // Applies every migration not yet recorded in `schema_version` (all in one
  // transaction, so running twice or concurrently is safe). `migration_lock_sql`
  // runs first in that transaction to serialize concurrent starts ("" if the
  // write transaction already does).
  static absl::StatusOr<std::unique_ptr<Store>> Create(
      std::unique_ptr<SqlDatabase> database,
      const std::vector<std::vector<std::string>>& migrations,
      const std::string& migration_lock_sql);

  absl::string_view kind() const override { return database_->kind(); }

  absl::StatusOr<v1::Conversation> CreateConversation(
      const v1::CreateConversationRequest& request) override;
  absl::StatusOr<v1::Conversation> GetConversation(const std::string& user_id,
                                                   const std::string& conversation_id) override;
  absl::StatusOr<v1::Conversation> GetClientNamedConversation(
      const std::string& user_id, const std::string& client_conversation_id) override;
  absl::StatusOr<ConversationPage> ListConversations(const std::string& user_id, int page_size,
                                                     const std::string& page_token) override;
  absl::StatusOr<v1::Conversation> UpdateConversation(
      const v1::UpdateConversationRequest& request) override;
  absl::Status DeleteConversation(const std::string& user_id,
                                  const std::string& conversation_id) override;
  absl::StatusOr<v1::Conversation> ForkConversation(
      const v1::ForkConversationRequest& request) override;
  absl::StatusOr<AppendResult> AppendMessage(const v1::AppendMessageRequest& request) override;
  absl::StatusOr<v1::Message> GetMessage(const std::string& user_id,
                                         const std::string& message_id) override;
  absl::StatusOr<MessagePage> ListMessages(const v1::ListMessagesRequest& request) override;
  std::vector<absl::StatusOr<int64_t>> AppendDeltas(const std::vector<DeltaRun>& runs) override;
  BatchResult CommitBatch(const std::vector<DeltaRun>& runs,
                          const std::vector<FinishRun>& finishes) override;
  absl::StatusOr<v1::Message> FinishMessage(const std::string& message_id,
                                            const v1::StreamFinish& finish) override;
  absl::StatusOr<MessageTail> ReadTail(const std::string& user_id, const std::string& message_id,
                                       int64_t after_seq) override;
  absl::Status PublishSignal(const std::string& user_id,
                             const v1::ConversationEvent& event) override;
  void SetStreamLease(absl::Duration lease) override;
  absl::Status RenewLeases(const std::vector<std::string>& message_ids,
                           absl::Time expire_time) override;
  absl::StatusOr<int> ExpireLeases(absl::Time now) override;
  void SetCommitListener(CommitListener listener) override {
    database_->SetCommitListener(std::move(listener));
  }
  void SetChangeListener(ChangeListener listener) override;
  void SetEventListener(EventListener listener) override;

 private:
  explicit SqlStore(std::unique_ptr<SqlDatabase> database) : database_(std::move(database)) {}

  void Changed(const std::vector<std::string>& message_ids);
  // Delivers committed events here when the database does not bring them back.
  void Published(const std::vector<v1::ConversationEvent>& events);
  void ResetRemoteListeners();

  std::unique_ptr<SqlDatabase> database_;
  absl::Mutex listener_mu_;
  ChangeListener listener_ ABSL_GUARDED_BY(listener_mu_);
  EventListener event_listener_ ABSL_GUARDED_BY(listener_mu_);
  absl::Duration lease_ ABSL_GUARDED_BY(listener_mu_) = absl::Seconds(5);
};

}  // namespace parley::persistence
