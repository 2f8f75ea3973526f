#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/trace_context.h"
#include "edge/clients/inference_client.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/edge/fake_backends.h"

namespace parley::edge {
namespace {

// A consumer may ask for the next message at any time, from any thread (a reply resumes when
// its socket drains or persistence catches up, besides after each message): a ReadNext() that
// comes while a message is being handed over must not start the next read into the message
// still being taken out. Every ReadNext() here comes from a thread of its own, none after a
// message: each read starts as soon as the previous message is handed over, so a read that
// overlaps the hand-over corrupts a message, and ThreadSanitizer reports one it sees overlap.
TEST(ReadStreamTest, ReadNextFromAnotherThreadDuringAHandOverLosesNoMessage) {
  testing::FakeBackends backends;
  testing::FakeInference::Script script;
  script.deltas.clear();
  constexpr int kDeltas = 2000;
  for (int i = 0; i < kDeltas; ++i) {
    script.deltas.push_back(absl::StrCat("delta ", i, " "));
  }
  backends.inference.SetScript(script);
  InferenceClient client(grpc::CreateChannel(backends.address, grpc::InsecureChannelCredentials()),
                         /*ready_timeout=*/absl::Seconds(30));

  absl::Mutex mutex;
  std::vector<std::string> texts;  // Guarded by `mutex`.
  absl::Notification done;
  absl::Status status;
  inference_pb::GenerateRequest request;
  request.set_model("fake-model");
  std::shared_ptr<GenerateStream> stream =
      client.Generate(request, absl::Seconds(60), common::TraceContext(),
                      GenerateStream::Callbacks{
                          .on_message =
                              [&](inference_pb::GenerateResponse chunk) {
                                if (chunk.has_text_delta()) {
                                  absl::MutexLock lock(&mutex);
                                  texts.push_back(chunk.text_delta().text());
                                }
                              },
                          .on_done =
                              [&](absl::Status end) {
                                status = std::move(end);
                                done.Notify();
                              },
                      });

  std::atomic<bool> stop{false};
  std::thread resumer([&] {
    while (!stop.load()) {
      stream->ReadNext();
      std::this_thread::yield();
    }
  });
  // Bounded only so that a stream that never ends fails instead of hanging.
  const bool ended = done.WaitForNotificationWithTimeout(absl::Seconds(120));
  stop = true;
  resumer.join();
  ASSERT_TRUE(ended);
  EXPECT_TRUE(status.ok()) << status;
  absl::MutexLock lock(&mutex);
  ASSERT_EQ(texts.size(), script.deltas.size());
  for (int i = 0; i < kDeltas; ++i) {
    EXPECT_EQ(texts[i], script.deltas[i]) << i;
  }
}

}  // namespace
}  // namespace parley::edge
