#include "persistence/stores/group_commit.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace parley::persistence {
namespace {

// A committer that records each batch and can hold the first one open, so that the writes
// arriving meanwhile queue behind it.
class RecordingCommitter {
 public:
  std::vector<absl::Status> Commit(const std::vector<const std::string*>& writes) {
    std::vector<std::string> batch;
    std::vector<absl::Status> statuses;
    for (const std::string* write : writes) {
      batch.push_back(*write);
      statuses.push_back(write->rfind("bad", 0) == 0 ? absl::InvalidArgumentError(*write)
                                                     : absl::OkStatus());
    }
    {
      absl::MutexLock lock(&mu_);
      batches_.push_back(batch);
    }
    if (holding_.exchange(false)) {
      entered_.Notify();
      release_.WaitForNotification();
    }
    return statuses;
  }

  std::vector<std::vector<std::string>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

  std::atomic<bool> holding_{false};
  absl::Notification entered_;
  absl::Notification release_;

 private:
  absl::Mutex mu_;
  std::vector<std::vector<std::string>> batches_ ABSL_GUARDED_BY(mu_);
};

TEST(GroupCommitTest, AWriteThatFindsTheWriterFreeCommitsAloneAtOnce) {
  RecordingCommitter committer;
  GroupCommit<std::string> commits(
      8, [&](const std::vector<const std::string*>& writes) { return committer.Commit(writes); });
  std::vector<size_t> observed;
  commits.SetObserver([&](size_t writes) { observed.push_back(writes); });
  EXPECT_TRUE(commits.Run("one").ok());
  EXPECT_TRUE(commits.Run("two").ok());
  EXPECT_EQ(committer.batches(), (std::vector<std::vector<std::string>>{{"one"}, {"two"}}));
  EXPECT_EQ(observed, (std::vector<size_t>{1, 1}));
}

TEST(GroupCommitTest, WritesArrivingDuringACommitShareTheNextAndKeepTheirOwnOutcome) {
  RecordingCommitter committer;
  committer.holding_ = true;
  GroupCommit<std::string> commits(
      64, [&](const std::vector<const std::string*>& writes) { return committer.Commit(writes); });
  std::vector<size_t> observed;
  commits.SetObserver([&](size_t writes) { observed.push_back(writes); });
  std::thread first([&] { EXPECT_TRUE(commits.Run("first").ok()); });
  committer.entered_.WaitForNotification();

  constexpr int kQueued = 6;
  std::vector<std::string> names;
  for (int i = 0; i < kQueued; ++i) {
    names.push_back(i % 3 == 1 ? "bad" + std::to_string(i) : "w" + std::to_string(i));
  }
  std::vector<absl::Status> statuses(kQueued);
  std::vector<std::thread> queued;
  for (int i = 0; i < kQueued; ++i) {
    queued.emplace_back([&, i] { statuses[i] = commits.Run(names[i]); });
  }
  // Every one of them waits behind the held commit before it is let go.
  while (commits.queued() < static_cast<size_t>(kQueued)) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  committer.release_.Notify();
  first.join();
  for (std::thread& thread : queued) {
    thread.join();
  }

  const std::vector<std::vector<std::string>> batches = committer.batches();
  ASSERT_EQ(batches.size(), 2u) << "the queued writes did not share one commit";
  EXPECT_EQ(batches[0], std::vector<std::string>{"first"});
  EXPECT_EQ(batches[1].size(), static_cast<size_t>(kQueued));
  for (int i = 0; i < kQueued; ++i) {
    EXPECT_EQ(statuses[i].ok(), names[i].rfind("bad", 0) != 0) << names[i] << ": " << statuses[i];
  }
  EXPECT_EQ(observed, (std::vector<size_t>{1, static_cast<size_t>(kQueued)}));
}

}  // namespace
}  // namespace parley::persistence
