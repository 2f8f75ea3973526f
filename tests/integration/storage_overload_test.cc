// Persistence under more load than its store threads take: the real binaries with one store
// thread and room for one waiting call, while the test holds SQLite's write lock so store calls
// hang. The call past the bound is refused at once (RESOURCE_EXHAUSTED), its client is told
// clearly, and nothing any client was acknowledged is lost once the store moves again.
#include <sqlite3.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "common/admission.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;
using ::parley::testing::HttpGet;
using ::parley::testing::ParleyStack;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

json::object Message(const std::string& id) {
  return json::object{{"type", "message"}, {"id", id}, {"content", "Say something short."}};
}

TEST(StorageOverloadTest, TheCallPastTheQueueIsRefusedClearlyAndNothingAcknowledgedIsLost) {
  StackOptions options;
  options.persistence_flags = {"--store_threads=1", "--store_queue_limit=1"};
  options.inference_flags = {"--sim_ttft_ms=1", "--sim_max_tokens=5"};
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(options);
  ASSERT_NE(stack, nullptr);

  // Another writer holds the database: every store write now waits (up to SQLite's busy
  // timeout), so the one store thread is taken and one more call fills the queue.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(stack->database_path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  constexpr int kClients = 4;
  struct Outcome {
    std::string first_type;  // "ack" or "error"
    std::string code;
    std::string message;
  };
  absl::Mutex mutex;
  std::vector<Outcome> outcomes(kClients);
  absl::Notification refused;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    absl::StatusOr<std::unique_ptr<WsClient>> client =
        WsClient::Connect(stack->edge_address(), absl::StrCat("/ws/chat?userId=busy-", i));
    ASSERT_TRUE(client.ok()) << client.status();
    clients.push_back(*std::move(client));
  }
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(clients[i]->SendJson(Message(absl::StrCat("busy-", i))).ok());
  }
  std::vector<std::thread> readers;
  for (int i = 0; i < kClients; ++i) {
    readers.emplace_back([&, i] {
      absl::StatusOr<json::object> frame = clients[i]->ReadJson(absl::Seconds(60));
      Outcome outcome;
      if (frame.ok()) {
        outcome = {Str(*frame, "type"), Str(*frame, "code"), Str(*frame, "message")};
      }
      absl::MutexLock lock(&mutex);
      outcomes[i] = outcome;
      if (absl::StrContains(outcome.message, "overloaded") && !refused.HasBeenNotified()) {
        refused.Notify();
      }
    });
  }
  // The refusal comes while the store is still held: it did not wait for a thread.
  EXPECT_TRUE(refused.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  for (std::thread& reader : readers) {
    reader.join();
  }

  int overloaded = 0;
  for (int i = 0; i < kClients; ++i) {
    const Outcome& outcome = outcomes[i];
    SCOPED_TRACE(absl::StrCat("client ", i, ", first frame: ", outcome.first_type, " ",
                              outcome.code, " ", outcome.message));
    if (outcome.first_type == "ack") {
      // Acknowledged means stored: the reply runs to its end.
      std::optional<json::object> complete = ReadUntil(*clients[i], "stream_complete");
      EXPECT_TRUE(complete.has_value());
      continue;
    }
    ASSERT_EQ(outcome.first_type, "error");
    EXPECT_EQ(outcome.code, "storage_unavailable");
    if (absl::StrContains(outcome.message, "overloaded")) {
      ++overloaded;
    }
    // The documented remedy works: the same message again, later. While the other clients'
    // replies are still being stored the queue may be full for a while yet: that is overload
    // again, with the same advice.
    bool acked = false;
    for (const absl::Time give_up = absl::Now() + absl::Seconds(30); !acked;) {
      ASSERT_LT(absl::Now(), give_up) << "the same message was never answered";
      ASSERT_TRUE(clients[i]->SendJson(Message(absl::StrCat("busy-", i))).ok());
      absl::StatusOr<json::object> answer = clients[i]->ReadJson();
      ASSERT_TRUE(answer.ok()) << answer.status();
      acked = Str(*answer, "type") == "ack";
      if (!acked) {
        ASSERT_EQ(Str(*answer, "type"), "error") << json::serialize(*answer);
        ASSERT_TRUE(absl::StrContains(Str(*answer, "message"), "overloaded"))
            << json::serialize(*answer);
        absl::SleepFor(absl::Milliseconds(200));
      }
    }
    EXPECT_TRUE(ReadUntil(*clients[i], "stream_complete").has_value());
  }
  EXPECT_GE(overloaded, 1);

  // Every client's message is stored exactly once, and the service answers a newcomer.
  for (int i = 0; i < kClients; ++i) {
    absl::StatusOr<testing::HttpResponse> list =
        HttpGet(stack->edge_address(), absl::StrCat("/v1/conversations?userId=busy-", i));
    ASSERT_TRUE(list.ok()) << list.status();
    ASSERT_EQ(list->status, 200) << list->body;
    EXPECT_EQ(json::parse(list->body).as_object().at("conversations").as_array().size(), 1u)
        << list->body;
  }
  absl::StatusOr<std::unique_ptr<WsClient>> newcomer =
      WsClient::Connect(stack->edge_address(), "/ws/chat?userId=busy-newcomer");
  ASSERT_TRUE(newcomer.ok()) << newcomer.status();
  ASSERT_TRUE((*newcomer)->SendJson(Message("newcomer-1")).ok());
  EXPECT_TRUE(ReadUntil(**newcomer, "stream_complete").has_value());

  absl::StatusOr<testing::HttpResponse> metrics =
      HttpGet(stack->persistence().WaitForListening("metrics_listen"), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_TRUE(absl::StrContains(metrics->body, "parley_persistence_overloaded_total{"));
}

TEST(StorageOverloadTest, ACallContinuingAcceptedWorkWaitsWhereANewOneIsRefused) {
  StackOptions options;
  options.persistence_flags = {"--store_threads=1", "--store_queue_limit=1"};
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(options);
  ASSERT_NE(stack, nullptr);
  auto stub = persistence_pb::ConversationService::NewStub(
      grpc::CreateChannel(stack->persistence_address(), grpc::InsecureChannelCredentials()));

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(stack->database_path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  // Writes wait for the lock: the first takes the one store thread, the next the one place in
  // the queue, and the first refused shows that both are taken. (Each waits at most SQLite's
  // busy timeout, 5 s, for the lock.)
  auto append = [&] {
    persistence_pb::AppendMessageRequest request;
    request.set_user_id("queue-user");
    request.set_role(persistence_pb::ROLE_USER);
    request.set_content("waits for the lock");
    persistence_pb::AppendMessageResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return stub->AppendMessage(&context, request, &response).error_code();
  };
  std::vector<std::future<grpc::StatusCode>> waiting;
  bool full = false;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(4); !full && absl::Now() < give_up;) {
    std::future<grpc::StatusCode> write = std::async(std::launch::async, append);
    if (write.wait_for(std::chrono::milliseconds(300)) != std::future_status::ready) {
      waiting.push_back(std::move(write));
      continue;
    }
    full = write.get() == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  auto list_conversations = [&](bool continuing) {
    persistence_pb::ListConversationsRequest request;
    request.set_user_id("queue-user");
    persistence_pb::ListConversationsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    if (continuing) {
      context.AddMetadata(common::kAdmissionMetadataKey, common::kAdmissionContinuing);
    }
    return stub->ListConversations(&context, request, &response);
  };
  if (!full) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    FAIL() << "the store queue never filled";
  }

  const int started_before = stack->PersistenceCallsStarted("GetMessage");
  grpc::Status continuing_status;
  std::thread continuing([&] {
    persistence_pb::GetMessageRequest request;
    request.set_user_id("queue-user");
    request.set_message_id("no-such-message");
    persistence_pb::GetMessageResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    context.AddMetadata(common::kAdmissionMetadataKey, common::kAdmissionContinuing);
    continuing_status = stub->GetMessage(&context, request, &response);
  });
  // Once persistence has the continuing call, the queue is still full for a new one.
  for (const absl::Time give_up = absl::Now() + absl::Seconds(4);
       stack->PersistenceCallsStarted("GetMessage") <= started_before;) {
    ASSERT_LT(absl::Now(), give_up) << "persistence never saw the continuing call";
  }
  EXPECT_EQ(list_conversations(false).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  for (std::future<grpc::StatusCode>& write : waiting) {
    write.wait();
  }
  continuing.join();
  // It waited its turn and ran: the message it asked for does not exist.
  EXPECT_EQ(continuing_status.error_code(), grpc::StatusCode::NOT_FOUND)
      << continuing_status.error_message();
  EXPECT_TRUE(list_conversations(true).ok());
}

}  // namespace
}  // namespace parley
