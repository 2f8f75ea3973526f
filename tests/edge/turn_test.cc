#include "edge/turn/turn.h"

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/edge/fake_backends.h"

namespace parley::edge {
namespace {

namespace net = boost::asio;

// Records events like a connection would, with a switch for backpressure.
class RecordingSink final : public EventSink {
 public:
  void Emit(Event event, std::optional<Clock::time_point>) override {
    events.push_back(std::move(event));
  }
  bool Writable() const override { return writable; }
  void WhenWritable(std::function<void()> resume) override { waiting.push_back(std::move(resume)); }

  template <class T>
  std::vector<T> All() const {
    std::vector<T> out;
    for (const Event& event : events) {
      if (const T* typed = std::get_if<T>(&event)) {
        out.push_back(*typed);
      }
    }
    return out;
  }

  std::vector<Event> events;
  bool writable = true;
  std::vector<std::function<void()>> waiting;
};

SendMessage Message(std::string id, std::string content, std::string conversation_id = "",
                    std::string model = "") {
  return SendMessage{std::move(id), std::move(conversation_id), std::move(content),
                     std::move(model)};
}

// Run twice: against a persistence that starts a turn in one call (AppendMessage's `turn`), and
// one that predates it, where the turn stores, lists and opens its reply one call at a time.
// The client must not be able to tell the two apart.
class TurnTest : public ::testing::TestWithParam<bool> {
 protected:
  // One server and channel for the whole suite, as in production where both
  // live as long as the process: tearing gRPC down and up per test only tests gRPC.
  static void SetUpTestSuite() {
    backends_ = new testing::FakeBackends();
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel(backends_->address, grpc::InsecureChannelCredentials()));
  }

  TurnTest() : work_(io_.get_executor()), persistence_(*channel_), inference_(*channel_) {
    backends_->persistence.Reset();
    backends_->inference.Reset();
    deps_.persistence = &persistence_;
    deps_.inference = &inference_;
    deps_.metrics = &metrics_.Dialect("native");
    deps_.tracker = &tracker_;
    deps_.history_messages = 20;
    backends_->persistence.StartTurns(GetParam());
    if (GetParam()) {
      // Turns start in one call once the edge knows its models: learned by the first turn.
      WarmModels(inference_);
    }
  }

  static void WarmModels(InferenceClient& inference) {
    absl::Notification learned;
    inference.ListModels([&](absl::StatusOr<std::vector<std::string>> models) {
      EXPECT_TRUE(models.ok()) << models.status();
      learned.Notify();
    });
    ASSERT_TRUE(learned.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }

  ~TurnTest() override {
    // Let cancelled or abandoned turns unwind before the clients go away.
    RunUntil([&] { return tracker_.running() == 0; });
  }

  // Runs the strand's work until `done` holds; fails the test after 30 s.
  template <class Predicate>
  bool RunUntil(Predicate done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!done()) {
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "timed out";
        return false;
      }
      io_.run_one_for(std::chrono::milliseconds(100));
    }
    return true;
  }

  std::shared_ptr<Turn> StartTurn(SendMessage message, std::shared_ptr<RecordingSink> sink,
                                  const std::string& user = "alice") {
    return Turn::Start(deps_, io_.get_executor(), sink, user, std::move(message),
                       Turn::Clock::now());
  }

  // Runs a whole turn and returns what the client saw.
  std::shared_ptr<RecordingSink> RunTurn(SendMessage message, const std::string& user = "alice") {
    auto sink = std::make_shared<RecordingSink>();
    StartTurn(std::move(message), sink, user);
    RunUntil([&] { return tracker_.running() == 0; });
    return sink;
  }

  double TurnsWithOutcome(const std::string& outcome) {
    return metrics_.Dialect("native").Turn(outcome).Value();
  }

  static testing::FakeBackends* backends_;
  static std::shared_ptr<grpc::Channel>* channel_;
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  PersistenceClient persistence_;
  InferenceClient inference_;
  EdgeMetrics metrics_;
  TurnTracker tracker_;
  TurnDeps deps_;
};

testing::FakeBackends* TurnTest::backends_ = nullptr;
std::shared_ptr<grpc::Channel>* TurnTest::channel_ = nullptr;

TEST(ConversationTitleTest, IsTheStartOfTheFirstMessageCutOnAWord) {
  EXPECT_EQ(ConversationTitle("  Plan a trip\nto Lisbon  "), "Plan a trip to Lisbon");
  const std::string long_message =
      "Could you explain how the quarterly revenue numbers were calculated for the report?";
  const std::string title = ConversationTitle(long_message);
  EXPECT_EQ(title, "Could you explain how the quarterly revenue numbers were…");
  // Never cut inside a multi-byte character.
  const std::string snowmen = std::string(59, 'x') + "☃☃☃";
  EXPECT_EQ(ConversationTitle(snowmen), std::string(59, 'x') + "…");
}

TEST_P(TurnTest, StreamsTheReplyAndStoresExactlyWhatWasStreamed) {
  std::shared_ptr<RecordingSink> sink = RunTurn(Message("c1", "Hi"));

  ASSERT_EQ(sink->events.size(), 6u);
  const Ack* ack = std::get_if<Ack>(&sink->events[0]);
  ASSERT_NE(ack, nullptr);
  EXPECT_EQ(ack->id, "c1");
  const StreamStart* start = std::get_if<StreamStart>(&sink->events[1]);
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->conversation_id, ack->conversation_id);
  EXPECT_EQ(start->model, "fake-model");  // The service's default, by name.
  std::string streamed;
  const std::vector<StreamToken> tokens = sink->All<StreamToken>();
  ASSERT_EQ(tokens.size(), 3u);
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(tokens[i].seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(tokens[i].message_id, start->message_id);
    streamed += tokens[i].token;
  }
  EXPECT_EQ(streamed, "Hello there");
  const StreamComplete* complete = std::get_if<StreamComplete>(&sink->events[5]);
  ASSERT_NE(complete, nullptr);
  EXPECT_EQ(complete->message_id, start->message_id);
  EXPECT_EQ(complete->last_seq, 3);
  EXPECT_EQ(complete->finish_reason, "stop");
  EXPECT_EQ(complete->prompt_tokens, 5);
  EXPECT_EQ(complete->completion_tokens, 3);

  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(ack->conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].id(), ack->message_id);
  EXPECT_EQ(stored[0].content(), "Hi");
  EXPECT_EQ(stored[0].client_message_id(), "c1");
  EXPECT_EQ(stored[1].id(), start->message_id);
  EXPECT_EQ(stored[1].parent_id(), ack->message_id);
  EXPECT_EQ(stored[1].role(), persistence_pb::ROLE_ASSISTANT);
  EXPECT_EQ(stored[1].content(), streamed);
  EXPECT_EQ(stored[1].status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored[1].model(), "fake-model");
  EXPECT_EQ(TurnsWithOutcome("complete"), 1);
  EXPECT_EQ(metrics_.Dialect("native").tokens_total.Value(), 3);
}

TEST_P(TurnTest, AnInferenceServiceThatPredatesTheFoldedEndIsReadAlike) {
  backends_->inference.SetScript({.predates_end = true});
  std::shared_ptr<RecordingSink> sink = RunTurn(Message("c1", "Hi"));

  ASSERT_EQ(backends_->inference.Requests().size(), 1u);
  EXPECT_TRUE(backends_->inference.Requests()[0].accepts_end());
  ASSERT_EQ(sink->All<StreamToken>().size(), 3u);
  const std::vector<StreamComplete> complete = sink->All<StreamComplete>();
  ASSERT_EQ(complete.size(), 1u);
  EXPECT_EQ(complete[0].last_seq, 3);
  EXPECT_EQ(complete[0].finish_reason, "stop");
  EXPECT_EQ(complete[0].prompt_tokens, 5);
  EXPECT_EQ(complete[0].completion_tokens, 3);
  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(sink->All<Ack>().at(0).conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].content(), "Hello there");
  EXPECT_EQ(stored[1].usage().completion_tokens(), 3);
}

TEST_P(TurnTest, SendsRecentHistoryAndTheNewMessageToInference) {
  const std::string conversation = "00000000000000000000000000c0f1e1";
  backends_->persistence.Seed("alice", conversation, persistence_pb::ROLE_USER, "one");
  backends_->persistence.Seed("alice", conversation, persistence_pb::ROLE_ASSISTANT, "two");
  backends_->persistence.Seed("alice", conversation, persistence_pb::ROLE_USER, "three");
  backends_->persistence.Seed("alice", conversation, persistence_pb::ROLE_ASSISTANT, "four");
  deps_.history_messages = 3;

  std::shared_ptr<RecordingSink> sink = RunTurn(Message("c2", "five", conversation, "m"));
  ASSERT_EQ(sink->All<StreamComplete>().size(), 1u);

  const std::vector<inference_pb::GenerateRequest> requests = backends_->inference.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].model(), "m");
  EXPECT_EQ(requests[0].user_id(), "alice");
  ASSERT_EQ(requests[0].messages_size(), 3);
  EXPECT_EQ(requests[0].messages(0).content(), "three");
  EXPECT_EQ(requests[0].messages(0).role(), inference_pb::ROLE_USER);
  EXPECT_EQ(requests[0].messages(1).content(), "four");
  EXPECT_EQ(requests[0].messages(1).role(), inference_pb::ROLE_ASSISTANT);
  EXPECT_EQ(requests[0].messages(2).content(), "five");
  EXPECT_EQ(requests[0].messages(2).role(), inference_pb::ROLE_USER);
}

TEST_P(TurnTest, AnUnknownModelIsAnsweredByTheDefaultWhenTheDialectAsksForIt) {
  SendMessage message = Message("c3", "hi", "", "gpt-4o");
  message.unknown_model = UnknownModel::kUseDefault;
  std::shared_ptr<RecordingSink> sink = RunTurn(std::move(message));
  const std::vector<StreamStart> starts = sink->All<StreamStart>();
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0].model, "fake-model");
  const std::vector<StreamComplete> completes = sink->All<StreamComplete>();
  ASSERT_EQ(completes.size(), 1u);
  EXPECT_EQ(completes[0].model, "fake-model");
  const std::vector<inference_pb::GenerateRequest> requests = backends_->inference.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].model(), "fake-model");
}

TEST_P(TurnTest, AKnownModelIsKeptWhenUnknownOnesFallBack) {
  SendMessage message = Message("c4", "hi", "", "other-model");
  message.unknown_model = UnknownModel::kUseDefault;
  std::shared_ptr<RecordingSink> sink = RunTurn(std::move(message));
  const std::vector<StreamComplete> completes = sink->All<StreamComplete>();
  ASSERT_EQ(completes.size(), 1u);
  EXPECT_EQ(completes[0].model, "other-model");
  const std::vector<inference_pb::GenerateRequest> requests = backends_->inference.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].model(), "other-model");
}

TEST_P(TurnTest, InferenceFailingMidStreamStoresThePartialReplyAsInterrupted) {
  backends_->inference.SetScript(
      {.deltas = {"par", "tial"}, .fail_with = absl::UnavailableError("engine crashed")});
  std::shared_ptr<RecordingSink> sink = RunTurn(Message("c3", "Hi"));

  EXPECT_EQ(sink->All<StreamToken>().size(), 2u);
  EXPECT_TRUE(sink->All<StreamComplete>().empty());
  EXPECT_TRUE(sink->All<ErrorEvent>().empty());
  const std::vector<StreamInterrupted> interrupted = sink->All<StreamInterrupted>();
  ASSERT_EQ(interrupted.size(), 1u);
  EXPECT_EQ(interrupted[0].message_id, sink->All<StreamStart>().at(0).message_id);
  EXPECT_EQ(interrupted[0].last_seq, 2);
  EXPECT_EQ(interrupted[0].error, "inference_unavailable");
  EXPECT_EQ(interrupted[0].partial_response, "partial");

  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(sink->All<Ack>().at(0).conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].content(), "partial");
  EXPECT_EQ(stored[1].status(), persistence_pb::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(TurnsWithOutcome("interrupted"), 1);
}

TEST_P(TurnTest, StorageDownIsAnErrorBeforeAnyAck) {
  backends_->persistence.FailAppends(absl::UnavailableError("disk on fire"));
  std::shared_ptr<RecordingSink> sink = RunTurn(Message("c4", "Hi"));
  ASSERT_EQ(sink->events.size(), 1u);
  const ErrorEvent* error = std::get_if<ErrorEvent>(&sink->events[0]);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, ErrorCode::kStorageUnavailable);
  EXPECT_EQ(error->id, "c4");
  EXPECT_TRUE(backends_->inference.Requests().empty());
  EXPECT_EQ(TurnsWithOutcome("error"), 1);
}

TEST_P(TurnTest, SomeoneElsesConversationIsNotFound) {
  backends_->persistence.Seed("bob", "000000000000000000000000000000b0", persistence_pb::ROLE_USER,
                              "secret");
  std::shared_ptr<RecordingSink> sink =
      RunTurn(Message("c5", "let me in", "000000000000000000000000000000b0"));
  ASSERT_EQ(sink->events.size(), 1u);
  const ErrorEvent* error = std::get_if<ErrorEvent>(&sink->events[0]);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, ErrorCode::kNotFound);
  EXPECT_EQ(backends_->persistence.Messages("000000000000000000000000000000b0").size(), 1u);
}

TEST_P(TurnTest, ASlowSocketStopsTheTurnPullingTokensUntilItDrains) {
  auto sink = std::make_shared<RecordingSink>();
  sink->writable = false;
  StartTurn(Message("c6", "Hi"), sink);
  ASSERT_TRUE(RunUntil([&] { return !sink->waiting.empty(); }));
  // One chunk was taken; the next is not read until the socket drains.
  EXPECT_EQ(sink->All<StreamToken>().size(), 1u);
  EXPECT_EQ(tracker_.running(), 1u);

  sink->writable = true;
  for (auto& resume : std::exchange(sink->waiting, {})) {
    resume();
  }
  ASSERT_TRUE(RunUntil([&] { return tracker_.running() == 0; }));
  EXPECT_EQ(sink->All<StreamToken>().size(), 3u);
  EXPECT_EQ(sink->All<StreamComplete>().size(), 1u);
}

TEST_P(TurnTest, ADroppedConnectionDoesNotStopTheTurn) {
  auto sink = std::make_shared<RecordingSink>();
  StartTurn(Message("c7", "Hi"), sink);
  ASSERT_TRUE(RunUntil([&] { return !sink->All<StreamStart>().empty(); }));
  const std::string conversation = sink->All<Ack>().at(0).conversation_id;
  sink.reset();  // The client went away.
  ASSERT_TRUE(RunUntil([&] { return tracker_.running() == 0; }));

  const std::vector<persistence_pb::Message> stored = backends_->persistence.Messages(conversation);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].content(), "Hello there");
  EXPECT_EQ(stored[1].status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
}

TEST_P(TurnTest, CancelStoresTheStreamedPrefixAsCancelled) {
  auto sink = std::make_shared<RecordingSink>();
  sink->writable = false;  // Holds the turn after its first token.
  StartTurn(Message("c8", "Hi"), sink);
  ASSERT_TRUE(RunUntil([&] { return !sink->waiting.empty(); }));
  tracker_.CancelAll();
  ASSERT_TRUE(RunUntil([&] { return tracker_.running() == 0; }));

  EXPECT_TRUE(sink->All<StreamComplete>().empty());
  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(sink->All<Ack>().at(0).conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].content(), "Hel");
  EXPECT_EQ(stored[1].status(), persistence_pb::MESSAGE_STATUS_CANCELLED);
  EXPECT_EQ(TurnsWithOutcome("cancelled"), 1);
}

TEST_P(TurnTest, ACancelFromTheClientIsAnsweredWithTheLastStoredSeq) {
  auto sink = std::make_shared<RecordingSink>();
  sink->writable = false;  // Holds the turn after its first token.
  std::shared_ptr<Turn> turn = StartTurn(Message("c9", "Hi"), sink);
  ASSERT_TRUE(RunUntil([&] { return !sink->waiting.empty(); }));
  turn->Cancel(/*notify=*/true);
  turn->Cancel(/*notify=*/true);  // Repeating it is harmless.
  ASSERT_TRUE(RunUntil([&] { return tracker_.running() == 0; }));

  const std::vector<StreamCancelled> cancelled = sink->All<StreamCancelled>();
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0].message_id, sink->All<StreamStart>().at(0).message_id);
  EXPECT_EQ(cancelled[0].last_seq, 1);
  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(sink->All<Ack>().at(0).conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].content(), "Hel");
  EXPECT_EQ(stored[1].last_seq(), 1);
  EXPECT_EQ(stored[1].status(), persistence_pb::MESSAGE_STATUS_CANCELLED);
}

// A cancel that arrives once the model's finish has, while the call's status is still on its way,
// comes too late to cut anything: the reply is stored whole, as complete, and the client hears so.
TEST_P(TurnTest, ACancelAfterTheModelFinishedLeavesTheReplyWholeAndComplete) {
  testing::FakeInference::Script script;
  script.hold_status = true;
  backends_->inference.SetScript(script);
  auto sink = std::make_shared<RecordingSink>();
  std::shared_ptr<Turn> turn = StartTurn(Message("c-late", "Hi"), sink);
  // The last token came with the finish; the call has not ended.
  ASSERT_TRUE(RunUntil([&] { return sink->All<StreamToken>().size() == 3; }));
  turn->Cancel(/*notify=*/true);
  // Time for the cancel to reach the turn, and for a call it cancelled to end.
  for (int i = 0; i < 10; ++i) {
    io_.run_one_for(std::chrono::milliseconds(20));
  }
  backends_->inference.ReleaseHeldCalls();
  ASSERT_TRUE(RunUntil([&] { return tracker_.running() == 0; }));

  EXPECT_TRUE(sink->All<StreamCancelled>().empty());
  const std::vector<StreamComplete> complete = sink->All<StreamComplete>();
  ASSERT_EQ(complete.size(), 1u);
  EXPECT_EQ(complete[0].last_seq, 3);
  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(sink->All<Ack>().at(0).conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].content(), "Hello there");
  EXPECT_EQ(stored[1].status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(TurnsWithOutcome("complete"), 1);
}

TEST_P(TurnTest, ATurnTakesOnePersistenceCallBeforeTheModelWhenPersistenceCanStartIt) {
  std::shared_ptr<RecordingSink> sink = RunTurn(Message("c10", "Hi"));
  ASSERT_EQ(sink->All<StreamComplete>().size(), 1u);
  const testing::FakePersistence::Calls calls = backends_->persistence.CallsSeen();
  EXPECT_EQ(calls.append_message, GetParam() ? 1 : 2);
  EXPECT_EQ(calls.list_messages, GetParam() ? 0 : 1);
  // That call is the reply's write stream, opened by the turn's start; one that predates it
  // refuses the start, and the turn goes on the older way.
  EXPECT_EQ(calls.write_starts, GetParam() ? 1 : 0);
  // Either way the reply is keyed by the message it answers, and answers it once.
  const std::vector<persistence_pb::Message> stored =
      backends_->persistence.Messages(sink->All<Ack>().at(0).conversation_id);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].client_message_id(), "reply:" + stored[0].id());
  EXPECT_EQ(stored[1].model(), "fake-model");
  const std::vector<inference_pb::GenerateRequest> requests = backends_->inference.Requests();
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_EQ(requests[0].messages_size(), 1);
  EXPECT_EQ(requests[0].messages(0).content(), "Hi");
}

TEST_P(TurnTest, AConnectionsNextTurnContinuesTheBranchItHoldsAndHearsWhatOthersAdded) {
  deps_.held_branch = std::make_shared<HeldBranch>();
  deps_.history_messages = 4;
  std::shared_ptr<RecordingSink> first = RunTurn(Message("c20", "one"));
  ASSERT_EQ(first->All<StreamComplete>().size(), 1u);
  const std::string conversation = first->All<Ack>().at(0).conversation_id;
  std::shared_ptr<RecordingSink> second = RunTurn(Message("c21", "two", conversation));
  ASSERT_EQ(second->All<StreamComplete>().size(), 1u);
  // Another connection (no held branch) goes on in the conversation meanwhile.
  std::shared_ptr<HeldBranch> held = std::exchange(deps_.held_branch, nullptr);
  ASSERT_EQ(RunTurn(Message("c22", "three", conversation))->All<StreamComplete>().size(), 1u);
  deps_.held_branch = held;
  std::shared_ptr<RecordingSink> fourth = RunTurn(Message("c23", "four", conversation));
  ASSERT_EQ(fourth->All<StreamComplete>().size(), 1u);
  std::shared_ptr<RecordingSink> fifth = RunTurn(Message("c24", "five", conversation));
  ASSERT_EQ(fifth->All<StreamComplete>().size(), 1u);

  // The second and fifth turns went on where this connection had left: persistence sent their
  // new message alone. The fourth had to hear the third from it.
  EXPECT_EQ(backends_->persistence.CallsSeen().history_continued, GetParam() ? 2 : 0);
  // Either way the model heard the newest four messages of the branch, as stored.
  const std::vector<inference_pb::GenerateRequest> requests = backends_->inference.Requests();
  ASSERT_EQ(requests.size(), 5u);
  auto heard = [&](size_t turn) {
    std::vector<std::string> contents;
    for (const inference_pb::ChatMessage& message : requests[turn].messages()) {
      contents.push_back(message.content());
    }
    return contents;
  };
  EXPECT_THAT(heard(1), ::testing::ElementsAre("one", "Hello there", "two"));
  EXPECT_THAT(heard(3), ::testing::ElementsAre("Hello there", "three", "Hello there", "four"));
  EXPECT_THAT(heard(4), ::testing::ElementsAre("Hello there", "four", "Hello there", "five"));
  EXPECT_EQ(held->conversation_id, conversation);
  ASSERT_EQ(held->messages.size(), 4u);
  EXPECT_EQ(held->messages.back().id(), fifth->All<StreamComplete>().at(0).message_id);
  const std::vector<persistence_pb::Message> stored = backends_->persistence.Messages(conversation);
  ASSERT_EQ(stored.size(), 10u);
  EXPECT_EQ(held->messages.back().content(), stored.back().content());
}

TEST_P(TurnTest, ATurnWhoseModelIsNotKnownYetStoresListsAndOpensOneCallAtATime) {
  // An edge that has not learned inference's models yet (its first turn) asks for them after
  // storing the message, as before; from then on its turns start in one call where they can.
  InferenceClient cold(*channel_);
  deps_.inference = &cold;
  std::shared_ptr<RecordingSink> first = RunTurn(Message("c11", "Hi"));
  ASSERT_EQ(first->All<StreamComplete>().size(), 1u);
  EXPECT_EQ(first->All<StreamStart>().at(0).model, "fake-model");
  EXPECT_EQ(backends_->persistence.CallsSeen().append_message, 2);
  EXPECT_EQ(backends_->persistence.CallsSeen().list_messages, 1);
  std::shared_ptr<RecordingSink> second =
      RunTurn(Message("c12", "again", first->All<Ack>().at(0).conversation_id));
  ASSERT_EQ(second->All<StreamComplete>().size(), 1u);
  EXPECT_EQ(backends_->persistence.CallsSeen().append_message, GetParam() ? 3 : 4);
  EXPECT_EQ(backends_->persistence.CallsSeen().list_messages, GetParam() ? 1 : 2);
  const std::vector<inference_pb::GenerateRequest> requests = backends_->inference.Requests();
  ASSERT_EQ(requests.size(), 2u);
  ASSERT_EQ(requests[1].messages_size(), 3);
  EXPECT_EQ(requests[1].messages(0).content(), "Hi");
  EXPECT_EQ(requests[1].messages(1).content(), "Hello there");
  EXPECT_EQ(requests[1].messages(2).content(), "again");
}

INSTANTIATE_TEST_SUITE_P(Persistence, TurnTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "StartsTurnsInOneCall" : "PredatesTurnStarts";
                         });

}  // namespace
}  // namespace parley::edge
