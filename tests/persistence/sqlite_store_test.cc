#include "persistence/stores/sqlite_store.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
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

}  // namespace
}  // namespace parley::persistence
