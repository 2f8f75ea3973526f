// Rooms across edge replicas: three edges and two persistence replicas on one PostgreSQL, the
// real binaries on loopback. One user's devices on different edges see each other's typing,
// messages and streaming replies; a viewer on another edge gets the exact stored end of a reply
// whose edge was killed; the edges' conversation watches move to the surviving persistence
// replica; a typing signal held up by a persistence outage is dropped, never delivered late; each
// message shows once on its sender's edge; a conversation the client names is one room across
// edges from before it is stored. Run through tests/persistence/with_postgres.sh.
#include <signal.h>

#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/support/reply_checksum.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;
using ::parley::testing::ChildProcess;
using ::parley::testing::HttpGet;
using ::parley::testing::Int;
using ::parley::testing::ReadUntil;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// A reply as one client saw it, from stream_start to its end.
struct Followed {
  std::string message_id;
  std::string text;
  int64_t last_seq = 0;
  bool duplicate_or_gap = false;
  std::optional<json::object> end;
};

// The value of the series `name` (with no labels, or the first whose labels contain
// `labels`) in a Prometheus text page; -1 when absent.
double MetricValue(const std::string& page, const std::string& name,
                   const std::string& labels = "") {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) {
      continue;
    }
    if (!line.empty() && line.front() == '{') {
      const size_t close = line.find('}');
      if (close == absl::string_view::npos ||
          line.substr(0, close).find(labels) == absl::string_view::npos) {
        continue;
      }
      line.remove_prefix(close + 1);
    } else if (!labels.empty() || line.empty() || line.front() != ' ') {
      continue;
    }
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &value)) {
      return value;
    }
  }
  return -1;
}

double Metric(const std::string& address, const std::string& name, const std::string& labels = "") {
  absl::StatusOr<testing::HttpResponse> page = HttpGet(address, "/metrics");
  return page.ok() ? MetricValue(page->body, name, labels) : -1;
}

// Waits (bounded) until `condition` holds; a false answer at the deadline fails the caller.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    // A pause between two looks at the processes' state; it never decides the outcome.
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class ScaleOutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("PARLEY_TEST_POSTGRES_URL");
    ASSERT_NE(url, nullptr) << "run through tests/persistence/with_postgres.sh";
    for (int i = 0; i < 2; ++i) {
      persistence_.push_back(ChildProcess::Start(
          "parley-persistence",
          {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", absl::StrCat("--store=", url),
           // Short, so a reply whose edge died ends soon.
           "--stream_lease_ms=1000"}));
      ASSERT_NE(persistence_.back(), nullptr);
      persistence_address_.push_back(persistence_.back()->WaitForListening());
      persistence_metrics_.push_back(persistence_.back()->WaitForListening("metrics_listen"));
      ASSERT_FALSE(persistence_address_.back().empty());
    }
    // Slow and long, so a client can act in the middle of a reply.
    inference_ = ChildProcess::Start(
        "parley-inference",
        {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
         "--sim_ttft_ms=1", "--sim_tokens_per_second=40", "--sim_max_tokens=200"});
    ASSERT_NE(inference_, nullptr);
    inference_address_ = inference_->WaitForListening();
    // Every edge reaches both replicas; the channel balances its calls over them.
    const std::string persistence_target =
        absl::StrCat("ipv4:", persistence_address_[0], ",", persistence_address_[1]);
    for (int i = 0; i < 3; ++i) {
      edges_.push_back(ChildProcess::Start(
          "parley-edge", {"--listen=127.0.0.1:0", absl::StrCat("--inference=", inference_address_),
                          absl::StrCat("--persistence=", persistence_target), "--allow_anonymous",
                          "--max_concurrent_turns=0"}));
      ASSERT_NE(edges_.back(), nullptr);
      edge_address_.push_back(edges_.back()->WaitForListening());
      ASSERT_FALSE(edge_address_.back().empty());
    }
  }

  std::unique_ptr<WsClient> Connect(int edge, const std::string& user) {
    absl::StatusOr<std::unique_ptr<WsClient>> client = WsClient::Connect(
        edge_address_[edge], absl::StrCat("/ws/chat?userId=", user), {"parley.v1"});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // A conversation the laptop starts (its first reply cancelled), then joined by the laptop and
  // by each of `others`: the room a test acts in. Empty after a failure.
  static std::string StartJoined(WsClient& laptop, std::initializer_list<WsClient*> others) {
    Followed first;
    const std::string conversation_id = Converse(laptop, "first", "", first, /*cancel=*/true);
    if (conversation_id.empty()) {
      ADD_FAILURE() << "the first turn ended without a conversation";
      return "";
    }
    Join(laptop, conversation_id);
    for (WsClient* other : others) {
      Join(*other, conversation_id);
    }
    return ::testing::Test::HasFatalFailure() ? "" : conversation_id;
  }

  static void Join(WsClient& client, const std::string& conversation_id) {
    ASSERT_TRUE(
        client.SendJson(json::object{{"type", "join"}, {"conversationId", conversation_id}}).ok());
    std::optional<json::object> joined = ReadUntil(client, "joined");
    ASSERT_TRUE(joined.has_value());
    EXPECT_EQ(Str(*joined, "conversationId"), conversation_id);
  }

  static void Type(WsClient& client, const std::string& conversation_id, bool is_typing) {
    ASSERT_TRUE(
        client
            .SendJson(json::object{
                {"type", "typing"}, {"conversationId", conversation_id}, {"isTyping", is_typing}})
            .ok());
  }

  // Reads the next frame, which must be of `type`.
  static std::optional<json::object> Next(WsClient& client, const std::string& type) {
    absl::StatusOr<json::object> frame = client.ReadJson();
    if (!frame.ok()) {
      ADD_FAILURE() << "no " << type << ": " << frame.status();
      return std::nullopt;
    }
    if (Str(*frame, "type") != type) {
      ADD_FAILURE() << "expected " << type << ", got " << json::serialize(*frame);
      return std::nullopt;
    }
    return *frame;
  }

  // Reads stream_tokens of the reply until `stop_after_seq` (0: until its end frame).
  static void ReadReply(WsClient& client, Followed& reply, int64_t stop_after_seq = 0) {
    while (stop_after_seq == 0 || reply.last_seq < stop_after_seq) {
      absl::StatusOr<json::object> frame = client.ReadJson();
      if (!frame.ok()) {
        ADD_FAILURE() << "reply ended early: " << frame.status();
        return;
      }
      const std::string type = Str(*frame, "type");
      if (type == "stream_token") {
        // A merged token covers several seqs; it must still start right after the last one.
        if (Int(*frame, "seq") <= reply.last_seq) {
          reply.duplicate_or_gap = true;
        }
        reply.last_seq = Int(*frame, "seq");
        reply.text += Str(*frame, "token");
      } else if (type == "stream_complete" || type == "stream_cancelled" ||
                 type == "stream_interrupted") {
        reply.end = *frame;
        return;
      } else if (type != "heartbeat") {
        ADD_FAILURE() << "unexpected frame in a reply: " << json::serialize(*frame);
        return;
      }
    }
  }

  // Sends a message and reads the sender's whole answer (cut short right away with `cancel`);
  // returns the conversation id.
  static std::string Converse(WsClient& client, const std::string& id,
                              const std::string& conversation_id, Followed& reply,
                              bool cancel = false) {
    json::object message{{"type", "message"}, {"id", id}, {"content", "Tell me a story."}};
    if (!conversation_id.empty()) {
      message["conversationId"] = conversation_id;
    }
    EXPECT_TRUE(client.SendJson(message).ok());
    std::optional<json::object> ack = Next(client, "ack");
    std::optional<json::object> start = Next(client, "stream_start");
    if (!ack.has_value() || !start.has_value()) {
      return "";
    }
    reply.message_id = Str(*start, "messageId");
    if (cancel) {
      EXPECT_TRUE(
          client.SendJson(json::object{{"type", "cancel"}, {"messageId", reply.message_id}}).ok());
    }
    ReadReply(client, reply);
    return Str(*ack, "conversationId");
  }

  persistence_pb::Message Stored(int replica, const std::string& user,
                                 const std::string& message_id) {
    auto stub = persistence_pb::ConversationService::NewStub(
        grpc::CreateChannel(persistence_address_[replica], grpc::InsecureChannelCredentials()));
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    persistence_pb::GetMessageResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub->GetMessage(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  }

  std::vector<std::unique_ptr<ChildProcess>> persistence_;
  std::vector<std::string> persistence_address_;
  std::vector<std::string> persistence_metrics_;
  std::unique_ptr<ChildProcess> inference_;
  std::string inference_address_;
  std::vector<std::unique_ptr<ChildProcess>> edges_;
  std::vector<std::string> edge_address_;
};

TEST_F(ScaleOutTest, TwoDevicesOnDifferentEdgesSeeEachOthersTypingAndMessages) {
  std::unique_ptr<WsClient> laptop = Connect(0, "two-devices");
  std::unique_ptr<WsClient> phone = Connect(1, "two-devices");
  // On the phone's edge too: must see the phone's message once, not again from storage.
  std::unique_ptr<WsClient> tablet = Connect(1, "two-devices");
  ASSERT_TRUE(laptop && phone && tablet);
  const std::string conversation_id = StartJoined(*laptop, {phone.get(), tablet.get()});
  ASSERT_FALSE(conversation_id.empty());

  Type(*laptop, conversation_id, true);
  for (WsClient* other : {phone.get(), tablet.get()}) {
    std::optional<json::object> typing = ReadUntil(*other, "typing");
    ASSERT_TRUE(typing.has_value());
    EXPECT_EQ(Str(*typing, "conversationId"), conversation_id);
    EXPECT_TRUE(typing->at("isTyping").as_bool());
  }
  Type(*phone, conversation_id, false);
  std::optional<json::object> stopped = ReadUntil(*laptop, "typing");
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(Str(*stopped, "conversationId"), conversation_id);
  EXPECT_FALSE(stopped->at("isTyping").as_bool());

  // The phone's message, and its reply, reach the laptop on the other edge as the phone sees
  // them.
  Followed sent;
  ASSERT_EQ(Converse(*phone, "second", conversation_id, sent), conversation_id);
  ASSERT_TRUE(sent.end.has_value());
  for (WsClient* viewer : {laptop.get(), tablet.get()}) {
    std::optional<json::object> added = ReadUntil(*viewer, "message_added");
    ASSERT_TRUE(added.has_value());
    EXPECT_EQ(Str(*added, "conversationId"), conversation_id);
    const json::object& message = added->at("message").as_object();
    EXPECT_EQ(Str(message, "role"), "user");
    EXPECT_EQ(Str(message, "content"), "Tell me a story.");
    std::optional<json::object> start = Next(*viewer, "stream_start");
    ASSERT_TRUE(start.has_value());
    EXPECT_EQ(Str(*start, "messageId"), sent.message_id);
    Followed seen;
    ReadReply(*viewer, seen);
    ASSERT_TRUE(seen.end.has_value());
    EXPECT_EQ(Str(*seen.end, "type"), "stream_complete");
    EXPECT_EQ(seen.text, sent.text);
    EXPECT_FALSE(seen.duplicate_or_gap);
    EXPECT_EQ(Str(*seen.end, "sha256"), Str(*sent.end, "sha256"));
  }

  // Nothing of the phone's turn reaches the tablet a second time: the laptop's next typing
  // follows the stored events of that turn in the watch, and nothing comes before it.
  Type(*laptop, conversation_id, true);
  absl::StatusOr<json::object> next = tablet->ReadJson();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(Str(*next, "type"), "typing") << json::serialize(*next);
}

TEST_F(ScaleOutTest, AReplyStreamedOnOneEdgeIsFollowedLiveOnAnother) {
  std::unique_ptr<WsClient> sender = Connect(0, "live-view");
  std::unique_ptr<WsClient> viewer = Connect(2, "live-view");
  ASSERT_TRUE(sender && viewer);
  Followed first;
  const std::string conversation_id = Converse(*sender, "first", "", first, /*cancel=*/true);
  ASSERT_FALSE(conversation_id.empty());
  ASSERT_NO_FATAL_FAILURE(Join(*viewer, conversation_id));

  ASSERT_TRUE(sender
                  ->SendJson(json::object{{"type", "message"},
                                          {"id", "second"},
                                          {"conversationId", conversation_id},
                                          {"content", "And then?"}})
                  .ok());
  ASSERT_TRUE(Next(*sender, "ack").has_value());
  std::optional<json::object> start = Next(*sender, "stream_start");
  ASSERT_TRUE(start.has_value());
  Followed sent;
  sent.message_id = Str(*start, "messageId");

  ASSERT_TRUE(ReadUntil(*viewer, "message_added").has_value());
  std::optional<json::object> viewed_start = Next(*viewer, "stream_start");
  ASSERT_TRUE(viewed_start.has_value());
  EXPECT_EQ(Str(*viewed_start, "messageId"), sent.message_id);
  Followed seen;
  ReadReply(*viewer, seen, /*stop_after_seq=*/1);
  ASSERT_FALSE(seen.end.has_value());
  // The viewer had tokens before the reply ended: the sender ends it only now.
  ASSERT_TRUE(
      sender->SendJson(json::object{{"type", "cancel"}, {"messageId", sent.message_id}}).ok());
  ReadReply(*sender, sent);
  ASSERT_TRUE(sent.end.has_value());
  EXPECT_EQ(Str(*sent.end, "type"), "stream_cancelled");
  ReadReply(*viewer, seen);
  ASSERT_TRUE(seen.end.has_value());
  EXPECT_EQ(Str(*seen.end, "type"), "stream_cancelled");
  EXPECT_EQ(Int(*seen.end, "lastSeq"), Int(*sent.end, "lastSeq"));
  EXPECT_EQ(Str(*seen.end, "sha256"), Str(*sent.end, "sha256"));
  EXPECT_EQ(seen.text, sent.text);
  EXPECT_FALSE(seen.duplicate_or_gap);
}

TEST_F(ScaleOutTest, AViewerOnAnotherEdgeGetsTheStoredEndOfAReplyWhoseEdgeWasKilled) {
  std::unique_ptr<WsClient> sender = Connect(0, "edge-killed");
  std::unique_ptr<WsClient> viewer = Connect(2, "edge-killed");
  ASSERT_TRUE(sender && viewer);
  Followed first;
  const std::string conversation_id = Converse(*sender, "first", "", first, /*cancel=*/true);
  ASSERT_FALSE(conversation_id.empty());
  ASSERT_NO_FATAL_FAILURE(Join(*viewer, conversation_id));

  ASSERT_TRUE(sender
                  ->SendJson(json::object{{"type", "message"},
                                          {"id", "second"},
                                          {"conversationId", conversation_id},
                                          {"content", "And then?"}})
                  .ok());
  ASSERT_TRUE(ReadUntil(*viewer, "message_added").has_value());
  std::optional<json::object> start = Next(*viewer, "stream_start");
  ASSERT_TRUE(start.has_value());
  const std::string message_id = Str(*start, "messageId");
  Followed seen;
  ReadReply(*viewer, seen, /*stop_after_seq=*/2);
  ASSERT_FALSE(seen.end.has_value());
  edges_[0]->Signal(SIGKILL);
  edges_[0]->Wait();

  ReadReply(*viewer, seen);
  ASSERT_TRUE(seen.end.has_value());
  EXPECT_EQ(Str(*seen.end, "type"), "stream_interrupted");
  EXPECT_EQ(Str(*seen.end, "error"), "reply_abandoned");
  EXPECT_FALSE(seen.duplicate_or_gap);
  const persistence_pb::Message stored = Stored(1, "edge-killed", message_id);
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(stored.finish_reason(), "lease_expired");
  EXPECT_EQ(seen.text, stored.content());
  EXPECT_EQ(Str(*seen.end, "partialResponse"), stored.content());
  EXPECT_EQ(Int(*seen.end, "lastSeq"), stored.last_seq());
  EXPECT_EQ(Str(*seen.end, "sha256"), stored.sha256());
  EXPECT_EQ(stored.sha256(), testing::IndependentSha256(stored.content()));
}

TEST_F(ScaleOutTest, AKilledPersistenceReplicaMovesTheWatchesToTheOther) {
  std::unique_ptr<WsClient> laptop = Connect(0, "replica-killed");
  std::unique_ptr<WsClient> phone = Connect(2, "replica-killed");
  ASSERT_TRUE(laptop && phone);
  const std::string conversation_id = StartJoined(*laptop, {phone.get()});
  ASSERT_FALSE(conversation_id.empty());

  // One watch per edge with a viewer, on whichever replica each edge's channel picked: kill one
  // that serves a watch.
  std::vector<double> watchers;
  for (const std::string& metrics : persistence_metrics_) {
    watchers.push_back(Metric(metrics, "parley_persistence_watchers"));
  }
  ASSERT_EQ(watchers[0] + watchers[1], 2);
  const int doomed = watchers[0] >= 1 ? 0 : 1;
  const int survivor = 1 - doomed;
  persistence_[doomed]->Signal(SIGKILL);
  persistence_[doomed]->Wait();

  EXPECT_TRUE(Eventually([&] {
    return Metric(persistence_metrics_[survivor], "parley_persistence_watchers") == 2 &&
           Metric(edge_address_[0], "parley_edge_conversation_watches_ready") == 1 &&
           Metric(edge_address_[2], "parley_edge_conversation_watches_ready") == 1;
  })) << "the watches did not move to the surviving replica";
  EXPECT_GE(Metric(edge_address_[0], "parley_edge_conversation_watch_restarts_total") +
                Metric(edge_address_[2], "parley_edge_conversation_watch_restarts_total"),
            1);

  Type(*laptop, conversation_id, true);
  std::optional<json::object> typing = ReadUntil(*phone, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_TRUE(typing->at("isTyping").as_bool());
  Type(*phone, conversation_id, true);
  typing = ReadUntil(*laptop, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_EQ(Str(*typing, "conversationId"), conversation_id);
}

TEST_F(ScaleOutTest, ATypingSignalFromAPersistenceOutageIsNeverDeliveredLate) {
  std::unique_ptr<WsClient> laptop = Connect(0, "outage-typing");
  std::unique_ptr<WsClient> phone = Connect(1, "outage-typing");
  ASSERT_TRUE(laptop && phone);
  const std::string conversation_id = StartJoined(*laptop, {phone.get()});
  ASSERT_FALSE(conversation_id.empty());

  // Both replicas hang: the laptop's typing cannot be published while it is fresh.
  for (auto& replica : persistence_) {
    ASSERT_TRUE(replica->Stop()) << "a replica did not stop";
  }
  Type(*laptop, conversation_id, true);
  const bool expired = Eventually([&] {
    return Metric(edge_address_[0], "parley_edge_room_signals_total", "direction=\"expired\"") >= 1;
  });
  for (auto& replica : persistence_) {
    replica->Signal(SIGCONT);
  }
  ASSERT_TRUE(expired) << "the edge did not give the typing signal up";

  // Once persistence is back, a fresh signal is delivered, and the old one was not before it
  // (nor is it after: the next typing the phone sees is the laptop's next one).
  Type(*laptop, conversation_id, false);
  std::optional<json::object> typing = ReadUntil(*phone, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_FALSE(typing->at("isTyping").as_bool()) << "a typing signal was delivered late";
  Type(*laptop, conversation_id, true);
  typing = ReadUntil(*phone, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_TRUE(typing->at("isTyping").as_bool());
  Type(*laptop, conversation_id, false);
  typing = ReadUntil(*phone, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_FALSE(typing->at("isTyping").as_bool()) << "a typing signal was delivered late";
}

// The sender's edge tells its own messages' stored events by the origin they were stored with,
// not by their ids: each message shows once there however its event races the turn, and a
// client's message id, unique only within a conversation, hides nothing of another one.
TEST_F(ScaleOutTest, EachMessageShowsOnceOnItsSendersEdgeAndNoIdHidesAnother) {
  std::unique_ptr<WsClient> sender = Connect(0, "shown-once");
  std::unique_ptr<WsClient> tablet = Connect(0, "shown-once");
  std::unique_ptr<WsClient> phone = Connect(1, "shown-once");
  ASSERT_TRUE(sender && tablet && phone);
  Followed first;
  const std::string conversation_id = Converse(*sender, "first", "", first, /*cancel=*/true);
  ASSERT_FALSE(conversation_id.empty());
  for (WsClient* client : {sender.get(), tablet.get(), phone.get()}) {
    ASSERT_NO_FATAL_FAILURE(Join(*client, conversation_id));
  }

  auto expect_message_and_reply = [&](WsClient& viewer, const std::string& content,
                                      const Followed& sent) {
    std::optional<json::object> added = Next(viewer, "message_added");
    ASSERT_TRUE(added.has_value());
    EXPECT_EQ(Str(added->at("message").as_object(), "content"), content);
    std::optional<json::object> viewed = Next(viewer, "stream_start");
    ASSERT_TRUE(viewed.has_value());
    EXPECT_EQ(Str(*viewed, "messageId"), sent.message_id);
    Followed seen;
    ReadReply(viewer, seen);
    ASSERT_TRUE(seen.end.has_value());
    EXPECT_EQ(seen.text, sent.text);
  };
  // Several, since each could race its own stored event to the sender's edge.
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    Followed sent;
    ASSERT_EQ(Converse(*sender, absl::StrCat("round-", round), conversation_id, sent,
                       /*cancel=*/true),
              conversation_id);
    ASSERT_TRUE(sent.end.has_value());
    for (WsClient* viewer : {tablet.get(), phone.get()}) {
      ASSERT_NO_FATAL_FAILURE(expect_message_and_reply(*viewer, "Tell me a story.", sent));
    }
    // Nothing of the turn comes a second time, to the sender or to a viewer on its edge: each
    // one's next frame is the phone's typing.
    Type(*phone, conversation_id, round % 2 == 0);
    for (WsClient* client : {sender.get(), tablet.get()}) {
      absl::StatusOr<json::object> next = client->ReadJson();
      ASSERT_TRUE(next.ok()) << next.status();
      EXPECT_EQ(Str(*next, "type"), "typing") << json::serialize(*next);
    }
  }

  // The sender starts another conversation with a message id; the phone, on the other edge,
  // happens to use the same id in the shared one. The tablet, on the sender's edge, sees it.
  Followed elsewhere;
  ASSERT_FALSE(Converse(*sender, "same-id", "", elsewhere, /*cancel=*/true).empty());
  Followed phones;
  ASSERT_EQ(Converse(*phone, "same-id", conversation_id, phones, /*cancel=*/true), conversation_id);
  ASSERT_NO_FATAL_FAILURE(expect_message_and_reply(*tablet, "Tell me a story.", phones));
  ASSERT_NO_FATAL_FAILURE(expect_message_and_reply(*sender, "Tell me a story.", phones));
}

TEST_F(ScaleOutTest, AConversationNamedByTheClientIsOneRoomAcrossEdgesFromTheStart) {
  std::unique_ptr<WsClient> laptop = Connect(0, "named-room");
  std::unique_ptr<WsClient> phone = Connect(1, "named-room");
  ASSERT_TRUE(laptop && phone);
  // Nothing is stored under the name yet; both join it, each on its own edge, and typing
  // crosses already.
  ASSERT_NO_FATAL_FAILURE(Join(*laptop, "conv-123"));
  ASSERT_NO_FATAL_FAILURE(Join(*phone, "conv-123"));
  Type(*laptop, "conv-123", true);
  std::optional<json::object> early = ReadUntil(*phone, "typing");
  ASSERT_TRUE(early.has_value());
  EXPECT_EQ(Str(*early, "conversationId"), "conv-123");
  EXPECT_TRUE(early->at("isTyping").as_bool());

  // The phone's first message stores it, on the phone's edge; the laptop sees it all, by name.
  Followed sent;
  ASSERT_EQ(Converse(*phone, "named-1", "conv-123", sent), "conv-123");
  ASSERT_TRUE(sent.end.has_value());
  std::optional<json::object> added = ReadUntil(*laptop, "message_added");
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(Str(*added, "conversationId"), "conv-123");
  EXPECT_EQ(Str(added->at("message").as_object(), "content"), "Tell me a story.");
  std::optional<json::object> start = Next(*laptop, "stream_start");
  ASSERT_TRUE(start.has_value());
  EXPECT_EQ(Str(*start, "conversationId"), "conv-123");
  EXPECT_EQ(Str(*start, "messageId"), sent.message_id);
  Followed seen;
  ReadReply(*laptop, seen);
  ASSERT_TRUE(seen.end.has_value());
  EXPECT_EQ(seen.text, sent.text);
  EXPECT_EQ(Str(*seen.end, "sha256"), Str(*sent.end, "sha256"));

  // From then on it is the stored conversation's room on both edges: typing crosses, both ways,
  // under the name each client used.
  Type(*laptop, "conv-123", true);
  std::optional<json::object> typing = ReadUntil(*phone, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_EQ(Str(*typing, "conversationId"), "conv-123");
  EXPECT_TRUE(typing->at("isTyping").as_bool());
  Type(*phone, "conv-123", false);
  typing = ReadUntil(*laptop, "typing");
  ASSERT_TRUE(typing.has_value());
  EXPECT_EQ(Str(*typing, "conversationId"), "conv-123");
  EXPECT_FALSE(typing->at("isTyping").as_bool());

  // The laptop's own message, on its edge, reaches the phone.
  Followed second;
  ASSERT_EQ(Converse(*laptop, "named-2", "conv-123", second, /*cancel=*/true), "conv-123");
  added = ReadUntil(*phone, "message_added");
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(Str(*added, "conversationId"), "conv-123");
}

}  // namespace
}  // namespace parley
