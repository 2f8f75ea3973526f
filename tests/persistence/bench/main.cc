// parley-persistence-bench: how many stream deltas per second the service
// acknowledges as durable with N concurrent write streams, and how many
// messages per second it appends. Runs the real service (gRPC over loopback)
// in this process on the store named by --store.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "persistence/conversation_service.h"
#include "persistence/store_factory.h"

ABSL_FLAG(std::string, store, "sqlite:/tmp/parley-bench/bench.db", "Store to measure");
ABSL_FLAG(std::string, streams, "1,100,1000", "Concurrent write streams, one run each");
ABSL_FLAG(int, window, 16, "Deltas a stream may have unacknowledged");
ABSL_FLAG(int, delta_bytes, 16, "Bytes of text per delta (a token or two)");
ABSL_FLAG(int, seconds, 5, "Duration of each run");
ABSL_FLAG(int, appenders, 16, "Concurrent AppendMessage callers");
ABSL_FLAG(int, channels, 8, "gRPC connections the streams spread over");

namespace {

namespace v1 = ::parley::persistence::v1;
using Stub = v1::ConversationService::Stub;

struct Totals {
  std::atomic<int64_t> acked{0};
  absl::Mutex mu;
  std::vector<double> latencies_ms ABSL_GUARDED_BY(mu);
};

// One write stream: keeps up to `window` deltas unacknowledged until `end`,
// then half-closes once everything it sent is acknowledged.
class Writer : public grpc::ClientBidiReactor<v1::WriteMessageStreamRequest,
                                              v1::WriteMessageStreamResponse> {
 public:
  Writer(Stub& stub, const std::string& user, const std::string& message_id, int window,
         const std::string& text, absl::Time end, Totals& totals)
      : window_(window), text_(text), end_(end), totals_(totals) {
    stub.async()->WriteMessageStream(&context_, this);
    request_.mutable_open()->set_user_id(user);
    request_.mutable_open()->set_message_id(message_id);
    writing_ = true;
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void Await() { done_.WaitForNotification(); }
  const grpc::Status& status() const { return status_; }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok) {
      MaybeWrite();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;
    }
    const absl::Time now = absl::Now();
    std::vector<double> latencies;
    {
      absl::MutexLock lock(&mu_);
      const int64_t durable = response_.durable_seq();
      if (durable > acked_) {
        totals_.acked += durable - acked_;
        acked_ = durable;
      }
      while (!sent_at_.empty() && sent_at_.front().first <= acked_) {
        latencies.push_back(absl::ToDoubleMilliseconds(now - sent_at_.front().second));
        sent_at_.pop_front();
      }
      MaybeWrite();
    }
    {
      absl::MutexLock lock(&totals_.mu);
      totals_.latencies_ms.insert(totals_.latencies_ms.end(), latencies.begin(), latencies.end());
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }

 private:
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || closed_) {
      return;
    }
    if (absl::Now() >= end_) {
      if (acked_ == sent_) {
        closed_ = true;
        StartWritesDone();
      }
      return;
    }
    if (sent_ - acked_ >= window_) {
      return;
    }
    ++sent_;
    request_.mutable_delta()->set_seq(sent_);
    request_.mutable_delta()->set_text(text_);
    sent_at_.emplace_back(sent_, absl::Now());
    writing_ = true;
    StartWrite(&request_);
  }

  const int window_;
  const std::string text_;
  const absl::Time end_;
  Totals& totals_;
  grpc::ClientContext context_;
  absl::Mutex mu_;
  v1::WriteMessageStreamRequest request_;
  v1::WriteMessageStreamResponse response_;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::pair<int64_t, absl::Time>> sent_at_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_;
  absl::Notification done_;
};

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) {
    return 0;
  }
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  std::nth_element(values.begin(), values.begin() + index, values.end());
  return values[index];
}

std::string NewConversation(Stub& stub, const std::string& user) {
  grpc::ClientContext context;
  v1::CreateConversationRequest request;
  request.set_user_id(user);
  v1::CreateConversationResponse response;
  grpc::Status status = stub.CreateConversation(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "create conversation: %s\n", status.error_message().c_str());
    std::exit(1);
  }
  return response.conversation().id();
}

void BenchStreams(std::vector<std::unique_ptr<Stub>>& stubs, int streams, const char* store) {
  const std::string user = absl::StrCat("bench-", absl::ToUnixNanos(absl::Now()));
  const std::string conversation = NewConversation(*stubs[0], user);
  std::vector<std::string> message_ids;
  for (int i = 0; i < streams; ++i) {
    grpc::ClientContext context;
    v1::AppendMessageRequest request;
    request.set_user_id(user);
    request.set_conversation_id(conversation);
    request.set_role(v1::ROLE_ASSISTANT);
    request.set_status(v1::MESSAGE_STATUS_STREAMING);
    v1::AppendMessageResponse response;
    if (!stubs[0]->AppendMessage(&context, request, &response).ok()) {
      std::fprintf(stderr, "append failed\n");
      std::exit(1);
    }
    message_ids.push_back(response.message().id());
  }
  Totals totals;
  const std::string text(absl::GetFlag(FLAGS_delta_bytes), 'x');
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  std::vector<std::unique_ptr<Writer>> writers;
  for (int i = 0; i < streams; ++i) {
    writers.push_back(std::make_unique<Writer>(*stubs[i % stubs.size()], user, message_ids[i],
                                               absl::GetFlag(FLAGS_window), text, end, totals));
  }
  absl::SleepFor(end - absl::Now());
  const int64_t acked_in_window = totals.acked.load();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  int failed = 0;
  for (auto& writer : writers) {
    writer->Await();
    failed += writer->status().ok() ? 0 : 1;
  }
  absl::MutexLock lock(&totals.mu);
  std::printf("%-10s streams=%-5d deltas/s=%-9.0f ack p50=%.1fms p99=%.1fms%s\n", store, streams,
              acked_in_window / seconds, Percentile(totals.latencies_ms, 0.5),
              Percentile(totals.latencies_ms, 0.99),
              failed > 0 ? absl::StrCat(" FAILED streams=", failed).c_str() : "");
  std::fflush(stdout);
}

void BenchAppends(std::vector<std::unique_ptr<Stub>>& stubs, const char* store) {
  const int appenders = absl::GetFlag(FLAGS_appenders);
  const absl::Time end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  std::atomic<int64_t> appended{0};
  std::atomic<int64_t> errors{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int i = 0; i < appenders; ++i) {
    threads.emplace_back([&, i] {
      Stub& stub = *stubs[i % stubs.size()];
      const std::string user = absl::StrCat("bench-append-", i, "-", absl::ToUnixNanos(start));
      const std::string conversation = NewConversation(stub, user);
      for (int64_t n = 0; absl::Now() < end; ++n) {
        grpc::ClientContext context;
        v1::AppendMessageRequest request;
        request.set_user_id(user);
        request.set_conversation_id(conversation);
        request.set_role(v1::ROLE_USER);
        request.set_content("a user message of a typical length, about eighty bytes long...");
        request.set_client_message_id(absl::StrCat("m", n));
        v1::AppendMessageResponse response;
        if (stub.AppendMessage(&context, request, &response).ok()) {
          ++appended;
        } else {
          ++errors;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("%-10s appenders=%-3d messages/s=%.0f%s\n", store, appenders,
              appended.load() / seconds,
              errors > 0 ? absl::StrCat(" errors=", errors.load()).c_str() : "");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const char* password = std::getenv("PARLEY_STORE_PASSWORD");
  absl::StatusOr<std::unique_ptr<parley::persistence::Store>> store =
      parley::persistence::OpenStore(absl::GetFlag(FLAGS_store), password ? password : "");
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  parley::persistence::ConversationService service(**store,
                                                   std::make_shared<prometheus::Registry>(), {});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot start the service\n");
    return 1;
  }
  std::vector<std::unique_ptr<Stub>> stubs;
  for (int i = 0; i < absl::GetFlag(FLAGS_channels); ++i) {
    grpc::ChannelArguments args;
    args.SetInt("parley.bench.channel", i);  // distinct args: a connection each
    stubs.push_back(v1::ConversationService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args)));
  }
  const std::string kind((*store)->kind());
  for (absl::string_view count : absl::StrSplit(absl::GetFlag(FLAGS_streams), ',')) {
    BenchStreams(stubs, std::stoi(std::string(count)), kind.c_str());
  }
  BenchAppends(stubs, kind.c_str());
  server->Shutdown();
  return 0;
}
