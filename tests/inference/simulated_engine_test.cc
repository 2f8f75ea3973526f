#include "inference/engines/simulated_engine.h"

#include <algorithm>
#include <functional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "inference/io_threads.h"
#include "tests/inference/generation_test_util.h"

namespace parley::inference {
namespace {

using testing::CollectAll;
using testing::Collected;
using testing::NextStep;

v1::GenerateRequest Prompt(const std::string& text) {
  v1::GenerateRequest request;
  v1::ChatMessage* system = request.add_messages();
  system->set_role(v1::ROLE_SYSTEM);
  system->set_content("You are terse.");
  v1::ChatMessage* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content(text);
  return request;
}

SimulatedEngine::Options Unpaced(int max_tokens = 10000) {
  SimulatedEngine::Options options;
  options.time_to_first_token = absl::ZeroDuration();
  options.tokens_per_second = 0;
  options.max_tokens = max_tokens;
  return options;
}

class SimulatedEngineTest : public ::testing::Test {
 protected:
  IoThreads io_{2};
};

TEST_F(SimulatedEngineTest, SamePromptGivesSameText) {
  SimulatedEngine engine(io_.context(), Unpaced());
  const Collected first = CollectAll(*engine.Start(Prompt("hello there"), absl::InfiniteFuture()));
  const Collected second = CollectAll(*engine.Start(Prompt("hello there"), absl::InfiniteFuture()));
  ASSERT_TRUE(first.status.ok()) << first.status;
  EXPECT_FALSE(first.Text().empty());
  EXPECT_EQ(first.Text(), second.Text());
  EXPECT_EQ(first.Text(), SimulatedEngine::NaturalReply(Prompt("hello there")));
}

// A first-time visitor reads at once that the model is simulated and that it heard the question.
TEST_F(SimulatedEngineTest, TheReplySaysItIsSimulatedAndTalksAboutTheQuestion) {
  const std::string reply =
      SimulatedEngine::NaturalReply(Prompt("How do lighthouses guide ships at night?"));
  EXPECT_TRUE(reply.starts_with("I am the simulated model of Parley")) << reply;
  EXPECT_NE(reply.find("You asked: \"How do lighthouses guide ships at night?\""),
            std::string::npos)
      << reply;
  EXPECT_NE(reply.find(" lighthouses"), reply.rfind(" lighthouses")) << "mentioned more than once";
  EXPECT_NE(reply.find(" ships"), std::string::npos) << reply;
  EXPECT_TRUE(reply.ends_with("a model server.")) << reply;
  // Sentences, not a list of words: each starts with a capital letter after ". ".
  for (size_t at = reply.find(". "); at != std::string::npos; at = reply.find(". ", at + 1)) {
    EXPECT_TRUE(absl::ascii_isupper(static_cast<unsigned char>(reply[at + 2]))) << reply.substr(at);
  }
}

TEST_F(SimulatedEngineTest, AReplyIsLongEnoughToWatchItStream) {
  for (const char* question : {"", "hi", "x", "Tell me a short story about a lighthouse."}) {
    const std::string reply = SimulatedEngine::NaturalReply(Prompt(question));
    EXPECT_GE(std::count(reply.begin(), reply.end(), ' ') + 1, 60) << reply;
  }
}

TEST_F(SimulatedEngineTest, DifferentPromptsGiveDifferentText) {
  SimulatedEngine engine(io_.context(), Unpaced());
  EXPECT_NE(CollectAll(*engine.Start(Prompt("hello there"), absl::InfiniteFuture())).Text(),
            CollectAll(*engine.Start(Prompt("how are you"), absl::InfiniteFuture())).Text());
}

TEST_F(SimulatedEngineTest, EachTokenIsOneWordAndTheStreamEndsWithUsageThenFinish) {
  SimulatedEngine engine(io_.context(), Unpaced());
  const Collected got = CollectAll(*engine.Start(Prompt("tell me"), absl::InfiniteFuture()));
  ASSERT_TRUE(got.status.ok()) << got.status;
  ASSERT_GE(got.chunks.size(), 3u);
  const int deltas = got.TextDeltas();
  ASSERT_EQ(static_cast<size_t>(deltas) + 2, got.chunks.size());
  for (int i = 0; i < deltas; ++i) {
    const std::string& token = got.chunks[i].text_delta().text();
    EXPECT_EQ(token.find(' ', 1), std::string::npos) << token;
    EXPECT_EQ(token[0] == ' ', i > 0) << token;
  }
  const v1::GenerateResponse& usage = got.chunks[deltas];
  ASSERT_TRUE(usage.has_usage());
  EXPECT_EQ(usage.usage().completion_tokens(), deltas);
  EXPECT_GT(usage.usage().prompt_tokens(), 0);
  ASSERT_TRUE(got.chunks[deltas + 1].has_finish());
  EXPECT_EQ(got.chunks[deltas + 1].finish().reason(), v1::FINISH_REASON_STOP);
}

TEST_F(SimulatedEngineTest, MaxTokensFlagCutsTheReplyWithLength) {
  SimulatedEngine engine(io_.context(), Unpaced(/*max_tokens=*/5));
  const Collected got = CollectAll(*engine.Start(Prompt("tell me"), absl::InfiniteFuture()));
  ASSERT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(got.TextDeltas(), 5);
  EXPECT_EQ(got.chunks[5].usage().completion_tokens(), 5);
  EXPECT_EQ(got.chunks[6].finish().reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_TRUE(SimulatedEngine::NaturalReply(Prompt("tell me")).starts_with(got.Text()));
}

TEST_F(SimulatedEngineTest, RequestMaxTokensLowersTheLimit) {
  SimulatedEngine engine(io_.context(), Unpaced(/*max_tokens=*/100));
  v1::GenerateRequest request = Prompt("tell me");
  request.mutable_sampling()->set_max_tokens(3);
  const Collected got = CollectAll(*engine.Start(request, absl::InfiniteFuture()));
  EXPECT_EQ(got.TextDeltas(), 3);
  EXPECT_EQ(got.chunks.back().finish().reason(), v1::FINISH_REASON_LENGTH);
}

TEST_F(SimulatedEngineTest, PacedStreamProducesTheSameTokens) {
  SimulatedEngine::Options paced;
  paced.time_to_first_token = absl::Milliseconds(1);
  paced.tokens_per_second = 2000;
  paced.max_tokens = 8;
  SimulatedEngine engine(io_.context(), paced);
  SimulatedEngine unpaced_engine(io_.context(), Unpaced(8));
  const Collected got = CollectAll(*engine.Start(Prompt("pace"), absl::InfiniteFuture()));
  EXPECT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(got.TextDeltas(), 8);
  EXPECT_EQ(got.Text(),
            CollectAll(*unpaced_engine.Start(Prompt("pace"), absl::InfiniteFuture())).Text());
}

TEST_F(SimulatedEngineTest, CancelEndsAWaitingNextWithCancelled) {
  SimulatedEngine::Options slow;
  slow.time_to_first_token = absl::Hours(1);
  SimulatedEngine engine(io_.context(), slow);
  std::shared_ptr<Generation> generation = engine.Start(Prompt("x"), absl::InfiniteFuture());
  auto done = std::make_shared<absl::Notification>();
  auto status = std::make_shared<absl::Status>();
  generation->Next([done, status](Step step) {
    EXPECT_FALSE(step.chunk.has_value());
    *status = step.status;
    done->Notify();
  });
  generation->Cancel();
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status->code(), absl::StatusCode::kCancelled);
}

TEST_F(SimulatedEngineTest, NothingIsProducedAfterCancel) {
  SimulatedEngine engine(io_.context(), Unpaced());
  std::shared_ptr<Generation> generation = engine.Start(Prompt("x"), absl::InfiniteFuture());
  ASSERT_TRUE(NextStep(*generation).chunk.has_value());
  generation->Cancel();
  const Step step = NextStep(*generation);
  EXPECT_FALSE(step.chunk.has_value());
  EXPECT_EQ(step.status.code(), absl::StatusCode::kCancelled);
}

TEST_F(SimulatedEngineTest, PassedDeadlineEndsWithDeadlineExceeded) {
  SimulatedEngine::Options slow;
  slow.time_to_first_token = absl::Hours(1);
  SimulatedEngine engine(io_.context(), slow);
  std::shared_ptr<Generation> generation =
      engine.Start(Prompt("x"), absl::Now() + absl::Milliseconds(1));
  const Step step = NextStep(*generation);
  EXPECT_FALSE(step.chunk.has_value());
  EXPECT_EQ(step.status.code(), absl::StatusCode::kDeadlineExceeded);
}

// Pacing runs on timers, not threads: thousands of paced streams share the
// two I/O threads and all finish.
TEST_F(SimulatedEngineTest, ThousandsOfConcurrentPacedStreamsOnTwoThreads) {
  SimulatedEngine::Options paced;
  paced.time_to_first_token = absl::Milliseconds(5);
  paced.tokens_per_second = 200;
  paced.max_tokens = 4;
  SimulatedEngine engine(io_.context(), paced);
  constexpr int kStreams = 3000;
  absl::Mutex mutex;
  int finished = 0;
  int text_deltas = 0;
  std::vector<std::shared_ptr<Generation>> generations;
  // Each stream pulls its next chunk from the callback of the previous one.
  std::function<void(Generation*)> pull = [&](Generation* generation) {
    generation->Next([&, generation](Step step) {
      if (step.chunk) {
        if (step.chunk->has_text_delta()) {
          absl::MutexLock lock(&mutex);
          ++text_deltas;
        }
        pull(generation);
        return;
      }
      EXPECT_TRUE(step.status.ok()) << step.status;
      absl::MutexLock lock(&mutex);
      ++finished;
    });
  };
  for (int i = 0; i < kStreams; ++i) {
    generations.push_back(
        engine.Start(Prompt("stream " + std::to_string(i)), absl::InfiniteFuture()));
    pull(generations.back().get());
  }
  absl::MutexLock lock(&mutex);
  auto all_done = [&]() { return finished == kStreams; };
  EXPECT_TRUE(mutex.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(60)));
  EXPECT_EQ(text_deltas, kStreams * 4);
}

}  // namespace
}  // namespace parley::inference
