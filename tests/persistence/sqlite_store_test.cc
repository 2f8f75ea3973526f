#include "persistence/stores/sqlite_store.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "persistence/stores/sqlite_database.h"
#include "tests/persistence/test_stores.h"

namespace parley::persistence {
namespace {

using ::parley::persistence::testing::MakeTempDir;
using ::parley::persistence::testing::RemoveDir;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    path_ = dir_ + "/nested/dir/parley.db";
    Open();
  }
  void TearDown() override {
    store_.reset();
    RemoveDir(dir_);
  }
  void Open() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  v1::Message Streaming() {
    v1::AppendMessageRequest request;
    request.set_user_id("u");
    request.set_role(v1::ROLE_ASSISTANT);
    request.set_status(v1::MESSAGE_STATUS_STREAMING);
    absl::StatusOr<AppendResult> result = store_->AppendMessage(request);
    EXPECT_TRUE(result.ok()) << result.status();
    return result->message;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<Store> store_;
};

TEST_F(SqliteStoreTest, ReopeningKeepsDataAndMigratesOnce) {
  v1::CreateConversationRequest create;
  create.set_user_id("u");
  create.set_title("kept");
  absl::StatusOr<v1::Conversation> created = store_->CreateConversation(create);
  ASSERT_TRUE(created.ok());
  Open();
  Open();
  absl::StatusOr<v1::Conversation> read = store_->GetConversation("u", created->id());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->title(), "kept");
}

TEST_F(SqliteStoreTest, DeltaRunsSkipRepeatsRefuseGapsAndNotify) {
  std::vector<std::string> changed;
  store_->SetChangeListener([&](const std::string& id) { changed.push_back(id); });
  const v1::Message message = Streaming();
  const v1::Message other = Streaming();

  std::vector<absl::StatusOr<int64_t>> results =
      store_->AppendDeltas({DeltaRun{message.id(), 1, {"a", "b"}}, DeltaRun{other.id(), 2, {"x"}}});
  ASSERT_EQ(results.size(), 2u);
  ASSERT_TRUE(results[0].ok());
  EXPECT_EQ(*results[0], 2);
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(changed, std::vector<std::string>{message.id()});

  results = store_->AppendDeltas({DeltaRun{message.id(), 2, {"b", "c"}}});
  ASSERT_TRUE(results[0].ok());
  EXPECT_EQ(*results[0], 3);

  absl::StatusOr<MessageTail> tail = store_->ReadTail("u", message.id(), 1);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->text, "bc");
  EXPECT_EQ(tail->last_seq, 3);
  EXPECT_EQ(store_->GetMessage("u", message.id())->content(), "abc");
  EXPECT_EQ(store_->ReadTail("someone-else", message.id(), 0).status().code(),
            absl::StatusCode::kNotFound);

  v1::StreamFinish finish;
  finish.set_status(v1::MESSAGE_STATUS_CANCELLED);
  ASSERT_TRUE(store_->FinishMessage(message.id(), finish).ok());
  EXPECT_EQ(store_->FinishMessage(message.id(), finish).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->AppendDeltas({DeltaRun{message.id(), 4, {"d"}}})[0].status().code(),
            absl::StatusCode::kFailedPrecondition);

  Open();
  absl::StatusOr<v1::Message> reread = store_->GetMessage("u", message.id());
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ(reread->content(), "abc");
  EXPECT_EQ(reread->status(), v1::MESSAGE_STATUS_CANCELLED);
}

TEST_F(SqliteStoreTest, LargeBatchesAndRepeatedMessagesCommitInOrder) {
  // 70 messages span several multi-row statements; the first also appears twice.
  std::vector<DeltaRun> runs;
  for (int i = 0; i < 70; ++i) {
    runs.push_back(DeltaRun{Streaming().id(), 1, {"a", "b"}});
  }
  runs.push_back(DeltaRun{runs[0].message_id, 3, {"c"}});
  std::vector<absl::StatusOr<int64_t>> results = store_->AppendDeltas(runs);
  ASSERT_EQ(results.size(), runs.size());
  for (int i = 0; i < 70; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(*results[i], 2);
    EXPECT_EQ(store_->GetMessage("u", runs[i].message_id)->content(), i == 0 ? "abc" : "ab");
  }
  ASSERT_TRUE(results[70].ok());
  EXPECT_EQ(*results[70], 3);
}

// Writes that queue while another commits share the next commit; each keeps its own outcome.
TEST(SqliteDatabaseTest, WritesQueuedDuringACommitShareTheNextAndAFailedOneIsUndoneAlone) {
  const std::string dir = MakeTempDir();
  absl::StatusOr<std::unique_ptr<SqliteDatabase>> opened = SqliteDatabase::Open(dir + "/g.db");
  ASSERT_TRUE(opened.ok()) << opened.status();
  SqliteDatabase& database = **opened;
  auto insert = [](SqlTransaction& tx, const std::string& key) {
    return tx.Query("INSERT INTO t (k) VALUES ($1)", {key}).status();
  };
  ASSERT_TRUE(database
                  .Transact(true,
                            [](SqlTransaction& tx) {
                              return tx.Query("CREATE TABLE t (k TEXT PRIMARY KEY)").status();
                            })
                  .ok());

  std::vector<size_t> committed;  // Transactions per commit, as the metric sees them.
  database.SetCommitListener([&](size_t transactions) { committed.push_back(transactions); });
  absl::Notification entered;
  absl::Notification release;
  std::thread first([&] {
    EXPECT_TRUE(database
                    .Transact(true,
                              [&](SqlTransaction& tx) {
                                absl::Status status = insert(tx, "first");
                                entered.Notify();
                                release.WaitForNotification();
                                return status;
                              })
                    .ok());
  });
  entered.WaitForNotification();

  // w0 and w3 store; w1 stores a row and then fails, w2 repeats a key, w4 fails at once.
  constexpr int kQueued = 5;
  std::vector<absl::Status> statuses(kQueued);
  std::vector<std::thread> writers;
  for (int i = 0; i < kQueued; ++i) {
    writers.emplace_back([&, i] {
      statuses[i] = database.Transact(true, [&, i](SqlTransaction& tx) -> absl::Status {
        const std::string key = "w" + std::to_string(i);
        switch (i) {
          case 1:
            if (absl::Status status = insert(tx, key); !status.ok()) {
              return status;
            }
            return absl::FailedPreconditionError("changed its mind");
          case 2:
            return insert(tx, "first");
          case 4:
            return absl::InvalidArgumentError("refused");
          default:
            return insert(tx, key);
        }
      });
    });
  }
  while (database.queued_writes() < static_cast<size_t>(kQueued)) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  release.Notify();
  first.join();
  for (std::thread& writer : writers) {
    writer.join();
  }

  EXPECT_EQ(committed, (std::vector<size_t>{1, kQueued})) << "one for the first, one for the rest";
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
  EXPECT_EQ(statuses[1].code(), absl::StatusCode::kFailedPrecondition) << statuses[1];
  EXPECT_EQ(statuses[2].code(), absl::StatusCode::kAlreadyExists) << statuses[2];
  EXPECT_TRUE(statuses[3].ok()) << statuses[3];
  EXPECT_EQ(statuses[4].code(), absl::StatusCode::kInvalidArgument) << statuses[4];
  std::vector<std::string> stored;
  ASSERT_TRUE(database
                  .Transact(false,
                            [&](SqlTransaction& tx) {
                              absl::StatusOr<SqlRows> rows = tx.Query("SELECT k FROM t ORDER BY k");
                              for (int r = 0; rows.ok() && r < rows->size(); ++r) {
                                stored.push_back(rows->Text(r, 0));
                              }
                              return rows.status();
                            })
                  .ok());
  EXPECT_EQ(stored, (std::vector<std::string>{"first", "w0", "w3"}));
  opened->reset();
  RemoveDir(dir);
}

}  // namespace
}  // namespace parley::persistence
