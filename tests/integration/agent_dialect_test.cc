// The agent dialect (/ws/agent/stream and its SSE twin GET /agent/stream) through the real
// binaries, with the openai engine and a fake upstream that sends exactly the reply shapes the
// dialect is about: reasoning, and fenced code whose fence lines are cut across chunks.
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "boost/json.hpp"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/support/parley_stack.h"
#include "tests/support/sse_client.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;
using ::parley::inference::testing::FakeOpenAiServer;
using ::parley::inference::testing::FakeReply;
using ::parley::inference::testing::SseReply;
using ::parley::testing::HttpRequest;
using ::parley::testing::HttpResponse;
using ::parley::testing::ParleyStack;
using ::parley::testing::SseClient;
using ::parley::testing::SseEvent;
using ::parley::testing::Str;
using ::parley::testing::WsClient;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr char kDefaultModel[] = "gpt-4o-mini";

// One upstream chunk carrying `delta`.
std::string UpstreamChunk(json::object delta, const char* finish_reason = nullptr) {
  json::object choice{{"index", 0}, {"delta", std::move(delta)}};
  choice["finish_reason"] =
      finish_reason == nullptr ? json::value(nullptr) : json::value(finish_reason);
  const json::object chunk{{"id", "chatcmpl-agent"},
                           {"object", "chat.completion.chunk"},
                           {"created", 1732406400},
                           {"model", kDefaultModel},
                           {"choices", json::array{std::move(choice)}}};
  return absl::StrCat("data: ", json::serialize(chunk), "\n\n");
}

struct UpstreamReply {
  std::vector<std::string> reasoning;
  std::vector<std::string> content;
  // Stop before this content piece until the test calls Continue().
  std::optional<size_t> wait_before_content;
  // Send the pieces and then nothing more, like a model still thinking.
  bool hold = false;
};

// Each piece is its own upstream write, so the edge sees the reply in exactly these chunks.
FakeReply Upstream(const UpstreamReply& reply) {
  std::vector<std::string> pieces;
  for (const std::string& text : reply.reasoning) {
    pieces.push_back(UpstreamChunk({{"reasoning_content", text}}));
  }
  const size_t first_content = pieces.size();
  for (const std::string& text : reply.content) {
    pieces.push_back(UpstreamChunk({{"content", text}}));
  }
  if (!reply.hold) {
    pieces.push_back(UpstreamChunk({}, "stop"));
    pieces.push_back(absl::StrCat(
        "data: ",
        json::serialize(json::object{
            {"id", "chatcmpl-agent"},
            {"object", "chat.completion.chunk"},
            {"choices", json::array{}},
            {"usage", {{"prompt_tokens", 21}, {"completion_tokens", 34}, {"total_tokens", 55}}}}),
        "\n\n"));
    pieces.push_back("data: [DONE]\n\n");
  }
  FakeReply fake = SseReply(pieces, /*finish_message=*/!reply.hold);
  if (reply.hold) {
    fake.then = FakeReply::Then::kHold;
  }
  if (reply.wait_before_content) {
    // writes[0] is the response head.
    fake.wait_before_write = 1 + first_content + *reply.wait_before_content;
  }
  return fake;
}

// A reply whose fences are cut across chunks: in the middle of the opening run, of the info
// string, of the closing run, and a tilde block closed at the very end.
const std::vector<std::string> kFencedReply = {"Here is the query:\n",
                                               "``",
                                               "`py",
                                               "thon\nimport pan",
                                               "das as pd\ndf = pd.read_csv('x.csv')\n``",
                                               "`\nThe",
                                               " top incidents are ",
                                               "listed.\n~~~\nraw\n",
                                               "~~",
                                               "~"};
constexpr char kFencedText[] =
    "Here is the query:\n```python\nimport pandas as pd\ndf = pd.read_csv('x.csv')\n```\nThe top "
    "incidents are listed.\n~~~\nraw\n~~~";
constexpr char kProse[] = "Here is the query:\nThe top incidents are listed.\n";
constexpr char kFirstBlock[] = "import pandas as pd\ndf = pd.read_csv('x.csv')\n";
constexpr char kSecondBlock[] = "raw\n";
const std::vector<std::string> kReasoning = {"The user wants ", "the top incidents."};

std::string AgentQuery(const std::string& user) {
  // The agent page sends its own model name, which this inference service does not know.
  return absl::StrCat(
      "question=Show+top+incidents&dataset=incidents&model=x-ai%2Fgrok-4-fast%3Afree&userId=",
      user);
}

std::vector<std::string> Keys(const json::object& object) {
  std::vector<std::string> keys;
  for (const auto& field : object) {
    keys.emplace_back(field.key());
  }
  return keys;
}

// What a client makes of a stream of agent events.
struct AgentRun {
  std::vector<json::object> events;
  // Event types, consecutive chunks of one kind (and of reasoning) counted once, progress with
  // its stage.
  std::vector<std::string> shape;
  std::string reasoning;
  std::string prose;
  std::string code;
  std::vector<std::string> blocks;
  std::optional<json::object> complete;
  int stream_ends = 0;

  void Add(const json::object& event) {
    events.push_back(event);
    std::string type = Str(event, "type");
    if (type == "progress") {
      type.append(":").append(Str(event, "stage"));
    }
    const bool run = type == "analysis_chunk" || type == "code_chunk" || type == "chain_of_thought";
    if (!(run && !shape.empty() && shape.back() == type)) {
      shape.push_back(type);
    }
    if (type == "chain_of_thought") {
      reasoning += Str(event, "content");
    } else if (type == "analysis_chunk") {
      prose += Str(event, "chunk");
    } else if (type == "code_chunk") {
      code += Str(event, "chunk");
    } else if (type == "code_generated") {
      blocks.push_back(Str(event, "code"));
    } else if (type == "complete") {
      complete = event;
    } else if (type == "stream_end") {
      ++stream_ends;
    }
  }
};

// Every event has exactly the fields the dialect names.
void ExpectExactFields(const std::vector<json::object>& events) {
  for (const json::object& event : events) {
    const std::string type = Str(event, "type");
    SCOPED_TRACE(json::serialize(event));
    if (type == "start" || type == "error") {
      EXPECT_THAT(Keys(event), UnorderedElementsAre("type", "message"));
    } else if (type == "progress") {
      EXPECT_THAT(Keys(event), UnorderedElementsAre("type", "stage", "message"));
    } else if (type == "chain_of_thought") {
      EXPECT_THAT(Keys(event), UnorderedElementsAre("type", "content"));
    } else if (type == "analysis_chunk" || type == "code_chunk") {
      EXPECT_THAT(Keys(event), UnorderedElementsAre("type", "chunk"));
    } else if (type == "code_generated") {
      EXPECT_THAT(Keys(event), UnorderedElementsAre("type", "code"));
    } else if (type == "complete") {
      ASSERT_THAT(Keys(event), UnorderedElementsAre("type", "data"));
      EXPECT_THAT(
          Keys(event.at("data").as_object()),
          UnorderedElementsAre("conversationId", "messageId", "answer", "finishReason", "usage"));
    } else if (type == "stream_end") {
      EXPECT_THAT(Keys(event), ElementsAre("type"));
    } else {
      ADD_FAILURE() << "an event this dialect does not have";
    }
  }
}

const std::vector<std::string> kFullShape = {
    "start",         "progress:stored", "progress:generating", "chain_of_thought", "analysis_chunk",
    "code_chunk",    "code_generated",  "analysis_chunk",      "code_chunk",       "code_generated",
    "progress:done", "complete",        "stream_end"};

class AgentDialectTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = new FakeOpenAiServer();
    stack_ =
        ParleyStack::Start({.inference_flags = {"--engine=openai",
                                                absl::StrCat("--upstream_url=", upstream_->url()),
                                                absl::StrCat("--upstream_model=", kDefaultModel)}})
            .release();
  }

  static void TearDownTestSuite() {
    delete stack_;
    delete upstream_;
  }

  void SetUp() override { ASSERT_NE(stack_, nullptr); }

  static const std::string& edge() { return stack_->edge_address(); }

  // Reads a WebSocket's events until the server closes it.
  static AgentRun ReadUntilClosed(WsClient& client, int& close_code) {
    AgentRun run;
    for (;;) {
      absl::StatusOr<json::object> event = client.ReadJson();
      if (!event.ok()) {
        EXPECT_EQ(event.status().code(), absl::StatusCode::kFailedPrecondition) << event.status();
        close_code = client.close_code();
        return run;
      }
      run.Add(*event);
    }
  }

  static persistence_pb::ConversationService::Stub& Persistence() {
    static auto* stub =
        persistence_pb::ConversationService::NewStub(
            grpc::CreateChannel(stack_->persistence_address(), grpc::InsecureChannelCredentials()))
            .release();
    return *stub;
  }

  // The reply as persistence holds it once it has ended: follows it to its end, then reads it.
  static persistence_pb::Message StoredReply(const std::string& user,
                                             const std::string& message_id) {
    persistence_pb::WatchMessageRequest watch;
    watch.set_user_id(user);
    watch.set_message_id(message_id);
    grpc::ClientContext watch_context;
    watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = Persistence().WatchMessage(&watch_context, watch);
    persistence_pb::WatchMessageResponse event;
    while (reader->Read(&event) && !event.has_finish()) {
    }
    EXPECT_TRUE(event.has_finish()) << "the reply never ended";
    watch_context.TryCancel();
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    persistence_pb::GetMessageResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(Persistence().GetMessage(&context, request, &response).ok());
    return response.message();
  }

  // The user's one conversation's messages, through the HTTP API.
  static json::array ApiMessages(const std::string& user, const std::string& conversation_id) {
    absl::StatusOr<HttpResponse> response =
        HttpRequest(edge(), "GET",
                    absl::StrCat("/v1/conversations/", conversation_id, "/messages?userId=", user));
    if (!response.ok() || response->status != 200) {
      ADD_FAILURE() << "cannot list the messages of " << conversation_id;
      return {};
    }
    return json::parse(response->body).at("messages").as_array();
  }

  static json::array ApiConversations(const std::string& user) {
    absl::StatusOr<HttpResponse> response =
        HttpRequest(edge(), "GET", absl::StrCat("/v1/conversations?userId=", user));
    if (!response.ok() || response->status != 200) {
      ADD_FAILURE() << "cannot list the conversations of " << user;
      return {};
    }
    return json::parse(response->body).at("conversations").as_array();
  }

  // The request the model got for the newest turn.
  static json::object LastUpstreamRequest() {
    const std::vector<FakeOpenAiServer::Request> requests = upstream_->requests();
    if (requests.empty()) {
      ADD_FAILURE() << "the model was never asked";
      return {};
    }
    return json::parse(requests.back().body).as_object();
  }

  static FakeOpenAiServer* upstream_;
  static ParleyStack* stack_;
};

FakeOpenAiServer* AgentDialectTest::upstream_ = nullptr;
ParleyStack* AgentDialectTest::stack_ = nullptr;

TEST_F(AgentDialectTest, AWebSocketTurnSendsTheDialectsEventsAndClosesNormally) {
  upstream_->Enqueue(Upstream({.reasoning = kReasoning, .content = kFencedReply}));
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge(), absl::StrCat("/ws/agent/stream?", AgentQuery("ann")));
  ASSERT_TRUE(client.ok()) << client.status();
  int close_code = 0;
  const AgentRun run = ReadUntilClosed(**client, close_code);

  EXPECT_EQ(run.shape, kFullShape);
  EXPECT_EQ(close_code, 1000);
  ExpectExactFields(run.events);
  EXPECT_EQ(run.reasoning, "The user wants the top incidents.");
  EXPECT_EQ(run.prose, kProse);
  EXPECT_EQ(run.code, absl::StrCat(kFirstBlock, kSecondBlock));
  EXPECT_THAT(run.blocks, ElementsAre(kFirstBlock, kSecondBlock));
  EXPECT_EQ(run.stream_ends, 1);
  ASSERT_TRUE(run.complete.has_value());
  const json::object& data = run.complete->at("data").as_object();
  EXPECT_EQ(Str(data, "answer"), kFencedText);
  EXPECT_EQ(Str(data, "finishReason"), "stop");
  EXPECT_EQ(data.at("usage").at("completionTokens").to_number<int>(), 34);
  EXPECT_EQ(data.at("usage").at("promptTokens").to_number<int>(), 21);
  // The model that answered is named where the dialect has room for it.
  for (const json::object& event : run.events) {
    if (Str(event, "stage") == "generating") {
      EXPECT_THAT(Str(event, "message"), ::testing::HasSubstr(kDefaultModel));
    }
  }

  // What was answered is what is stored, and what the HTTP API shows.
  const std::string conversation_id = Str(data, "conversationId");
  const std::string message_id = Str(data, "messageId");
  const persistence_pb::Message stored = StoredReply("ann", message_id);
  EXPECT_EQ(stored.content(), kFencedText);
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.conversation_id(), conversation_id);
  const json::array messages = ApiMessages("ann", conversation_id);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(Str(messages[0].as_object(), "content"), "Show top incidents");
  EXPECT_EQ(Str(messages[1].as_object(), "id"), message_id);
  EXPECT_EQ(Str(messages[1].as_object(), "content"), kFencedText);

  // The dataset is the conversation's metadata and part of the model's system context; the
  // model the client named is unknown, so the default answered.
  persistence_pb::GetConversationRequest get;
  get.set_user_id("ann");
  get.set_conversation_id(conversation_id);
  persistence_pb::GetConversationResponse conversation;
  grpc::ClientContext context;
  ASSERT_TRUE(Persistence().GetConversation(&context, get, &conversation).ok());
  EXPECT_EQ(conversation.conversation().metadata().at("dataset"), "incidents");
  const json::object request = LastUpstreamRequest();
  EXPECT_EQ(request.at("model"), kDefaultModel);
  const json::array& prompt = request.at("messages").as_array();
  ASSERT_GE(prompt.size(), 2u);
  EXPECT_EQ(prompt.front().at("role"), "system");
  EXPECT_THAT(std::string(prompt.front().at("content").as_string()),
              ::testing::HasSubstr("incidents"));
  EXPECT_EQ(prompt.back().at("content"), "Show top incidents");
}

TEST_F(AgentDialectTest, TheSseTwinSendsTheSameEventsWithIdsAndEnds) {
  upstream_->Enqueue(Upstream({.reasoning = kReasoning, .content = kFencedReply}));
  absl::StatusOr<std::unique_ptr<SseClient>> client =
      SseClient::Open(edge(), absl::StrCat("/agent/stream?", AgentQuery("bea")));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->status(), 200);
  EXPECT_TRUE(absl::StartsWith((*client)->Header("Content-Type"), "text/event-stream"));

  AgentRun run;
  std::vector<std::string> ids;
  for (;;) {
    absl::StatusOr<SseEvent> event = (*client)->Next();
    if (!event.ok()) {
      // The response ends after stream_end.
      EXPECT_EQ(event.status().code(), absl::StatusCode::kOutOfRange) << event.status();
      break;
    }
    ASSERT_EQ(run.stream_ends, 0) << "an event after stream_end";
    ids.push_back(event->id);
    run.Add(json::parse(event->data).as_object());
  }
  EXPECT_EQ(run.shape, kFullShape);
  ExpectExactFields(run.events);
  EXPECT_EQ(run.reasoning, "The user wants the top incidents.");
  EXPECT_EQ(run.prose, kProse);
  EXPECT_THAT(run.blocks, ElementsAre(kFirstBlock, kSecondBlock));
  ASSERT_TRUE(run.complete.has_value());
  const json::object& data = run.complete->at("data").as_object();
  EXPECT_EQ(Str(data, "answer"), kFencedText);
  const std::string message_id = Str(data, "messageId");
  EXPECT_EQ(StoredReply("bea", message_id).content(), kFencedText);

  // Every id names the reply and a position that never goes back.
  int64_t last_position = -1;
  for (const std::string& id : ids) {
    ASSERT_TRUE(absl::StartsWith(id, absl::StrCat(message_id, ":"))) << id;
    const int64_t position = std::stoll(id.substr(message_id.size() + 1));
    EXPECT_GE(position, last_position) << id;
    last_position = position;
  }
}

TEST_F(AgentDialectTest, ASseClientThatReconnectsWithLastEventIdGetsTheRestExactlyOnce) {
  // The model pauses in the middle of the first block until the client has reconnected.
  upstream_->Enqueue(
      Upstream({.reasoning = kReasoning, .content = kFencedReply, .wait_before_content = 5}));
  const size_t requests_before = upstream_->requests().size();
  absl::StatusOr<std::unique_ptr<SseClient>> first =
      SseClient::Open(edge(), absl::StrCat("/agent/stream?", AgentQuery("cyd")));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ((*first)->status(), 200);
  AgentRun run;
  std::string last_event_id;
  while (run.code != kFirstBlock) {
    absl::StatusOr<SseEvent> event = (*first)->Next();
    ASSERT_TRUE(event.ok()) << event.status() << " after " << run.code;
    last_event_id = event->id;
    run.Add(json::parse(event->data).as_object());
  }
  // The network drops; EventSource reconnects with the id of the last event it got.
  (*first)->Drop();
  absl::StatusOr<std::unique_ptr<SseClient>> second =
      SseClient::Open(edge(), absl::StrCat("/agent/stream?", AgentQuery("cyd")),
                      {{"Last-Event-ID", last_event_id}});
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ((*second)->status(), 200);
  upstream_->Continue();
  for (;;) {
    absl::StatusOr<SseEvent> event = (*second)->Next();
    if (!event.ok()) {
      EXPECT_EQ(event.status().code(), absl::StatusCode::kOutOfRange) << event.status();
      break;
    }
    last_event_id = event->id;
    run.Add(json::parse(event->data).as_object());
  }

  // Both responses together: every chunk exactly once, the question asked once.
  EXPECT_EQ(run.shape, kFullShape);
  EXPECT_EQ(run.prose, kProse);
  EXPECT_EQ(run.code, absl::StrCat(kFirstBlock, kSecondBlock));
  EXPECT_THAT(run.blocks, ElementsAre(kFirstBlock, kSecondBlock));
  EXPECT_EQ(run.stream_ends, 1);
  ASSERT_TRUE(run.complete.has_value());
  const json::object& data = run.complete->at("data").as_object();
  EXPECT_EQ(Str(data, "answer"), kFencedText);
  EXPECT_EQ(upstream_->requests().size(), requests_before + 1);
  const json::array conversations = ApiConversations("cyd");
  ASSERT_EQ(conversations.size(), 1u);
  EXPECT_EQ(ApiMessages("cyd", Str(data, "conversationId")).size(), 2u);

  // Reconnecting once more after the end only hears that it has ended.
  absl::StatusOr<std::unique_ptr<SseClient>> third =
      SseClient::Open(edge(), absl::StrCat("/agent/stream?", AgentQuery("cyd")),
                      {{"Last-Event-ID", last_event_id}});
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_EQ((*third)->status(), 200);
  absl::StatusOr<SseEvent> end = (*third)->Next();
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(end->data, R"({"type":"stream_end"})");
  EXPECT_EQ((*third)->Next().status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(upstream_->requests().size(), requests_before + 1);
}

TEST_F(AgentDialectTest, ALastEventIdThatIsNotOneIsRefused) {
  const size_t requests_before = upstream_->requests().size();
  for (const char* garbage : {"garbage", "reply:-1", "reply:12x"}) {
    absl::StatusOr<std::unique_ptr<SseClient>> client = SseClient::Open(
        edge(), absl::StrCat("/agent/stream?", AgentQuery("dan")), {{"Last-Event-ID", garbage}});
    ASSERT_TRUE(client.ok()) << client.status();
    EXPECT_EQ((*client)->status(), 400) << garbage;
    EXPECT_TRUE(absl::StartsWith((*client)->Header("Content-Type"), "application/json"));
    absl::StatusOr<std::string> body = (*client)->ReadBody();
    ASSERT_TRUE(body.ok()) << body.status();
    EXPECT_THAT(*body, ::testing::HasSubstr("Last-Event-ID"));
  }
  // A well-formed id of a reply this user does not have is not found.
  absl::StatusOr<std::unique_ptr<SseClient>> unknown =
      SseClient::Open(edge(), absl::StrCat("/agent/stream?", AgentQuery("dan")),
                      {{"Last-Event-ID", "0123456789abcdef:7"}});
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ((*unknown)->status(), 404);
  EXPECT_EQ(upstream_->requests().size(), requests_before);
  EXPECT_EQ(ApiConversations("dan").size(), 0u);
}

TEST_F(AgentDialectTest, NoQuestionIsAnErrorThenPolicyCloseOr400) {
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge(), "/ws/agent/stream?dataset=incidents&userId=eve");
  ASSERT_TRUE(client.ok()) << client.status();
  int close_code = 0;
  const AgentRun run = ReadUntilClosed(**client, close_code);
  EXPECT_THAT(run.shape, ElementsAre("error"));
  ExpectExactFields(run.events);
  EXPECT_EQ(close_code, 1008);

  absl::StatusOr<std::unique_ptr<SseClient>> sse =
      SseClient::Open(edge(), "/agent/stream?question=&userId=eve");
  ASSERT_TRUE(sse.ok()) << sse.status();
  EXPECT_EQ((*sse)->status(), 400);
  EXPECT_TRUE(absl::StartsWith((*sse)->Header("Content-Type"), "application/json"));
  absl::StatusOr<std::string> body = (*sse)->ReadBody();
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, ::testing::HasSubstr("question"));
  EXPECT_EQ(ApiConversations("eve").size(), 0u);
}

TEST_F(AgentDialectTest, ClosingTheSocketMidReplyStopsItAndKeepsWhatWasStreamed) {
  upstream_->Enqueue(
      Upstream({.content = {"First line of prose.\n", "```sql\nSELECT 1;\n"}, .hold = true}));
  absl::StatusOr<std::unique_ptr<WsClient>> client =
      WsClient::Connect(edge(), absl::StrCat("/ws/agent/stream?", AgentQuery("fay")));
  ASSERT_TRUE(client.ok()) << client.status();
  AgentRun run;
  while (run.code != "SELECT 1;\n") {
    absl::StatusOr<json::object> event = (*client)->ReadJson();
    ASSERT_TRUE(event.ok()) << event.status();
    run.Add(*event);
  }
  EXPECT_EQ(run.prose, "First line of prose.\n");
  // The agent page's Stop button: close the socket.
  ASSERT_TRUE((*client)->Close().ok());
  // The model is told to stop...
  EXPECT_TRUE(upstream_->WaitForDisconnect().has_value());
  // ...and the reply is stored as cancelled with what was streamed.
  const json::array conversations = ApiConversations("fay");
  ASSERT_EQ(conversations.size(), 1u);
  const json::array messages = ApiMessages("fay", Str(conversations[0].as_object(), "id"));
  ASSERT_EQ(messages.size(), 2u);
  const persistence_pb::Message stored = StoredReply("fay", Str(messages[1].as_object(), "id"));
  EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_CANCELLED);
  EXPECT_EQ(stored.content(), "First line of prose.\n```sql\nSELECT 1;\n");
}

TEST_F(AgentDialectTest, ABadTokenIsRefusedWith401BeforeAnyEvent) {
  const std::string secret_file = absl::StrCat(testing::MakeTempDir(), "/jwt-secret");
  {
    std::FILE* file = std::fopen(secret_file.c_str(), "w");
    ASSERT_NE(file, nullptr);
    std::fputs("an-integration-secret-of-at-least-32-bytes\n", file);
    std::fclose(file);
  }
  std::unique_ptr<testing::ChildProcess> edge =
      stack_->StartEdge({absl::StrCat("--jwt_secret_file=", secret_file)});
  ASSERT_NE(edge, nullptr);
  const std::string address = edge->WaitForListening();
  const size_t requests_before = upstream_->requests().size();

  const std::vector<std::pair<std::string, std::string>> upgrade = {
      {"Connection", "Upgrade"},
      {"Upgrade", "websocket"},
      {"Sec-WebSocket-Version", "13"},
      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};
  absl::StatusOr<HttpResponse> ws =
      HttpRequest(address, "GET", "/ws/agent/stream?question=Hi&token=not-a-jwt", "", upgrade);
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ(ws->status, 401);
  EXPECT_FALSE(WsClient::Connect(address, "/ws/agent/stream?question=Hi&token=not-a-jwt").ok());
  std::vector<std::pair<std::string, std::string>> bearer = upgrade;
  bearer.emplace_back("Authorization", "Bearer not-a-jwt");
  ws = HttpRequest(address, "GET", "/ws/agent/stream?question=Hi", "", bearer);
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ(ws->status, 401);

  absl::StatusOr<std::unique_ptr<SseClient>> sse =
      SseClient::Open(address, "/agent/stream?question=Hi&token=not-a-jwt");
  ASSERT_TRUE(sse.ok()) << sse.status();
  EXPECT_EQ((*sse)->status(), 401);
  EXPECT_EQ(upstream_->requests().size(), requests_before);
}

}  // namespace
}  // namespace parley
