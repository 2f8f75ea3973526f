// A client that reads slowly or not at all, against the real binaries: the edge's memory stays
// bounded, other clients are not held up, a slow reader gets merged token deltas that lose
// nothing, and a stalled one is closed (1008) while its replies still complete and are stored.
//
// Replies come from a fake OpenAI-compatible upstream (model "big") so that each one is large;
// a client's kernel buffers on loopback hold about 3 MB, so a client stalls only once several
// of them are streaming to it at once.
#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/support/child_process.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace beast = boost::beast;
namespace json = boost::json;
namespace net = boost::asio;
namespace websocket = beast::websocket;
namespace persistence_pb = ::parley::persistence::v1;
using ::parley::inference::testing::FakeOpenAiServer;
using ::parley::inference::testing::SseReply;
using ::parley::testing::Int;
using ::parley::testing::ParleyStack;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// Each "big" reply: 250 deltas of about 4 kB, just under persistence's 1 MiB per message.
constexpr int kDeltasPerReply = 250;
constexpr size_t kDeltaBytes = 4000;

// Delta `i` starts with its number, so a lost or repeated delta changes the text.
std::string Delta(int i) {
  std::string text = absl::StrCat("[", i, "]");
  text.append(kDeltaBytes - text.size(), static_cast<char>('a' + i % 26));
  return text;
}

std::string BigReplyText() {
  std::string text;
  for (int i = 0; i < kDeltasPerReply; ++i) {
    text += Delta(i);
  }
  return text;
}

// The big reply as the upstream streams it: one server-sent event per delta.
inference::testing::FakeReply BigReply() {
  std::vector<std::string> events;
  for (int i = 0; i < kDeltasPerReply; ++i) {
    events.push_back(absl::StrCat(R"(data: {"choices":[{"index":0,"delta":{"content":")", Delta(i),
                                  R"("},"finish_reason":null}]})", "\n\n"));
  }
  events.push_back(
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
      "data: [DONE]\n\n");
  return SseReply(events);
}

// Routes model "big" to the fake upstream; everything else to the simulated engine.
std::string WriteModelsConfig(const FakeOpenAiServer& upstream) {
  const std::string path = absl::StrCat(testing::MakeTempDir(), "/models.json");
  std::ofstream(path) << absl::StrCat(
      R"({"default_model":"simulated","models":[{"name":"simulated","engine":"simulated"},)",
      R"({"name":"big","engine":"openai","base_url":")", upstream.url(),
      R"(","upstream_model":"big"}]})");
  return path;
}

// A WebSocket client whose socket has a tiny receive buffer, so that when it does not read,
// the edge's writes stall soon. Reads have a timeout, so a test fails instead of hanging.
class SlowReader {
 public:
  static std::unique_ptr<SlowReader> Connect(const std::string& address, const std::string& user) {
    std::unique_ptr<SlowReader> client(new SlowReader());
    const size_t colon = address.rfind(':');
    const net::ip::tcp::endpoint endpoint(net::ip::make_address(address.substr(0, colon)),
                                          std::stoi(address.substr(colon + 1)));
    beast::error_code ec;
    net::ip::tcp::socket& socket = client->ws_.next_layer();
    socket.open(net::ip::tcp::v4(), ec);
    // Set before connecting: the window the client advertises is fixed by then.
    socket.set_option(net::socket_base::receive_buffer_size(4096), ec);
    socket.connect(endpoint, ec);
    if (ec) {
      ADD_FAILURE() << "connect: " << ec.message();
      return nullptr;
    }
    client->ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& request) {
      request.set(beast::http::field::sec_websocket_protocol, "parley.v1");
    }));
    client->ws_.handshake(address, absl::StrCat("/ws/chat?userId=", user), ec);
    if (ec) {
      ADD_FAILURE() << "handshake: " << ec.message();
      return nullptr;
    }
    client->ws_.text(true);
    return client;
  }

  bool Send(const json::object& frame) {
    beast::error_code ec;
    ws_.write(net::buffer(json::serialize(frame)), ec);
    return !ec;
  }

  // The next frame; nullopt once the server closed (see close_code()) or on error/timeout.
  std::optional<json::object> Read(absl::Duration timeout = absl::Seconds(60)) {
    bool done = false;
    beast::error_code result;
    buffer_.clear();
    ws_.async_read(buffer_, [&](beast::error_code ec, size_t) {
      result = ec;
      done = true;
    });
    io_.restart();
    io_.run_for(absl::ToChronoNanoseconds(timeout));
    if (!done) {
      ws_.next_layer().cancel();
      io_.restart();
      io_.run();
      ADD_FAILURE() << "no frame within " << timeout;
      return std::nullopt;
    }
    if (result == websocket::error::closed) {
      close_code_ = ws_.reason().code;
      return std::nullopt;
    }
    if (result) {
      error_ = result.message();
      return std::nullopt;
    }
    json::value value = json::parse(beast::buffers_to_string(buffer_.data()));
    return value.as_object();
  }

  int close_code() const { return close_code_; }
  const std::string& error() const { return error_; }

 private:
  SlowReader() : ws_(io_) {}

  net::io_context io_;
  websocket::stream<net::ip::tcp::socket> ws_;
  beast::flat_buffer buffer_;
  int close_code_ = 0;
  std::string error_;
};

json::object Message(const std::string& id, const std::string& model) {
  json::object message{{"type", "message"}, {"id", id}, {"content", "Tell me everything."}};
  if (!model.empty()) {
    message["model"] = model;
  }
  return message;
}

// One reply as a client received it.
struct Reply {
  std::string text;
  int64_t last_seq = 0;
  int frames = 0;
  bool out_of_order = false;  // A seq not above the previous one: a duplicate or reordering.
  std::optional<json::object> end;
};

// Adds a stream_token or a reply's last frame to `replies`; false for anything unexpected.
bool Record(const json::object& frame, std::map<std::string, Reply>& replies) {
  const std::string type = Str(frame, "type");
  if (type == "ack" || type == "stream_start") {
    return true;
  }
  Reply& reply = replies[Str(frame, "messageId")];
  if (type == "stream_token") {
    // A merged token covers several seqs; it must still come after the previous one.
    if (Int(frame, "seq") <= reply.last_seq) {
      reply.out_of_order = true;
    }
    reply.last_seq = Int(frame, "seq");
    reply.text += Str(frame, "token");
    ++reply.frames;
    return true;
  }
  if (type == "stream_complete") {
    reply.end = frame;
    return true;
  }
  ADD_FAILURE() << "unexpected frame: " << json::serialize(frame);
  return false;
}

// A WsClient reads one whole reply: the client that must not be held up.
std::optional<std::pair<std::string, Reply>> ReadWholeReply(WsClient& client) {
  std::map<std::string, Reply> replies;
  while (true) {
    absl::StatusOr<json::object> frame = client.ReadJson();
    if (!frame.ok()) {
      ADD_FAILURE() << "reply ended early: " << frame.status();
      return std::nullopt;
    }
    if (!Record(*frame, replies)) {
      return std::nullopt;
    }
    if (Str(*frame, "type") == "stream_complete") {
      const std::string id = Str(*frame, "messageId");
      return std::make_pair(id, replies[id]);
    }
  }
}

// VmRSS or VmHWM (peak) of a process, in bytes.
int64_t MemoryOf(pid_t pid, absl::string_view field) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, absl::StrCat(field, ":"))) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      int64_t kilobytes = 0;
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kilobytes)) {
        return kilobytes * 1024;
      }
    }
  }
  ADD_FAILURE() << "no " << field << " for pid " << pid;
  return 0;
}

// The value of an unlabelled counter on the edge's /metrics; -1 if absent.
double Metric(const std::string& address, absl::string_view name) {
  absl::StatusOr<testing::HttpResponse> response = testing::HttpGet(address, "/metrics");
  if (!response.ok()) {
    ADD_FAILURE() << response.status();
    return -1;
  }
  // The sum over the metric's series (one per dialect), -1 when it has none.
  double sum = -1;
  for (absl::string_view line : absl::StrSplit(response->body, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || (line.empty() || (line[0] != ' ' && line[0] != '{'))) {
      continue;
    }
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space != absl::string_view::npos && absl::SimpleAtod(line.substr(space + 1), &value)) {
      sum = (sum < 0 ? 0 : sum) + value;
    }
  }
  return sum;
}

class EdgeBackpressureTest : public ::testing::Test {
 protected:
  // `replies` big replies are queued at the upstream; `edge_flags` are added to the edge's.
  void StartStack(int replies, std::vector<std::string> edge_flags) {
    for (int i = 0; i < replies; ++i) {
      upstream_.Enqueue(BigReply());
    }
    // One client may run many replies at once here.
    edge_flags.insert(edge_flags.end(),
                      {"--connection_messages_per_minute=0", "--user_messages_per_minute=0",
                       "--max_concurrent_turns=0"});
    stack_ = ParleyStack::Start(StackOptions{
        .inference_flags = {absl::StrCat("--models_config=", WriteModelsConfig(upstream_)),
                            "--sim_ttft_ms=1", "--sim_tokens_per_second=0"},
        .edge_flags = std::move(edge_flags),
    });
    ASSERT_NE(stack_, nullptr);
    stub_ = persistence_pb::ConversationService::NewStub(
        grpc::CreateChannel(stack_->persistence_address(), grpc::InsecureChannelCredentials()));
  }

  // Sends `count` big-reply messages in one go, so the edge reads them all before it answers.
  std::unique_ptr<SlowReader> StartBigReplies(const std::string& user, int count) {
    std::unique_ptr<SlowReader> client = SlowReader::Connect(stack_->edge_address(), user);
    if (client == nullptr) {
      return nullptr;
    }
    for (int i = 0; i < count; ++i) {
      EXPECT_TRUE(client->Send(Message(absl::StrCat(user, "-", i), "big")));
    }
    return client;
  }

  persistence_pb::Message Stored(const std::string& user, const std::string& message_id) {
    persistence_pb::GetMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    persistence_pb::GetMessageResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->GetMessage(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  }

  // Blocks until persistence has the end of `message_id` (a watch, so no polling).
  void WaitUntilStored(const std::string& user, const std::string& message_id) {
    persistence_pb::WatchMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    request.set_after_seq(kDeltasPerReply);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub_->WatchMessage(&context, request);
    persistence_pb::WatchMessageResponse event;
    while (reader->Read(&event)) {
      if (event.has_finish()) {
        context.TryCancel();
        break;
      }
    }
    reader->Finish();
  }

  // The assistant replies persistence holds for `user`, one per conversation.
  std::vector<persistence_pb::Message> AssistantReplies(const std::string& user) {
    std::vector<persistence_pb::Message> found;
    persistence_pb::ListConversationsRequest list;
    list.set_user_id(user);
    list.set_page_size(100);
    persistence_pb::ListConversationsResponse conversations;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->ListConversations(&context, list, &conversations).ok());
    for (const persistence_pb::Conversation& conversation : conversations.conversations()) {
      persistence_pb::ListMessagesRequest request;
      request.set_user_id(user);
      request.set_conversation_id(conversation.id());
      persistence_pb::ListMessagesResponse messages;
      grpc::ClientContext message_context;
      EXPECT_TRUE(stub_->ListMessages(&message_context, request, &messages).ok());
      for (const persistence_pb::Message& message : messages.messages()) {
        if (message.role() == persistence_pb::ROLE_ASSISTANT) {
          found.push_back(message);
        }
      }
    }
    return found;
  }

  // Declared first so it outlives the processes streaming from it.
  FakeOpenAiServer upstream_;
  std::unique_ptr<ParleyStack> stack_;
  std::unique_ptr<persistence_pb::ConversationService::Stub> stub_;
};

// Under ThreadSanitizer (scripts/test --sanitize=thread) the edge keeps 4 bytes of shadow for
// each byte it touches, so the same buffers take five times the resident memory; buffering all
// 40 MB offered would still be far past the bound.
#if defined(__SANITIZE_THREAD__)
constexpr int64_t kSanitizerMemoryFactor = 5;
#elif defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer (scripts/test --sanitize=address,undefined) every block freed goes to a
// quarantine (256 MB) before it may be reused, so all that the edge ever freed would count as
// resident: the stack of this test runs without it (QuarantineOff). The red zones around each
// block and ASan's allocator still take about three and a half times the memory (13 MiB here
// becomes 46), so the bound is five times as large; buffering the 40 MB offered would take far
// more than that.
constexpr int64_t kSanitizerMemoryFactor = 5;
#else
constexpr int64_t kSanitizerMemoryFactor = 1;
#endif

// The services a test starts while this is alive run without AddressSanitizer's quarantine (see
// above); the test binary's later tests get the options they had. Nothing to do without ASan.
class QuarantineOff {
 public:
#if defined(__SANITIZE_ADDRESS__)
  QuarantineOff() {
    const char* options = std::getenv("ASAN_OPTIONS");
    had_options_ = options != nullptr;
    saved_ = had_options_ ? options : "";
    setenv("ASAN_OPTIONS", absl::StrCat(saved_, ":quarantine_size_mb=0").c_str(), 1);
  }
  ~QuarantineOff() {
    if (had_options_) {
      setenv("ASAN_OPTIONS", saved_.c_str(), 1);
    } else {
      unsetenv("ASAN_OPTIONS");
    }
  }

 private:
  bool had_options_ = false;
  std::string saved_;
#endif
};

TEST_F(EdgeBackpressureTest, AClientThatNeverReadsNeitherGrowsTheEdgeNorSlowsAnother) {
  constexpr int kReplies = 40;
  [[maybe_unused]] const QuarantineOff quarantine_off;
  ASSERT_NO_FATAL_FAILURE(StartStack(kReplies, {"--slow_client_timeout_ms=0"}));
  absl::StatusOr<std::unique_ptr<WsClient>> reader =
      WsClient::Connect(stack_->edge_address(), "/ws/chat?userId=reader", {"parley.v1"});
  ASSERT_TRUE(reader.ok()) << reader.status();
  // A first reply warms up the edge's channels, so what follows measures only the stall.
  ASSERT_TRUE((*reader)->SendJson(Message("warm-up", "")).ok());
  ASSERT_TRUE(ReadWholeReply(**reader).has_value());
  const pid_t edge = stack_->edge().pid();
  const int64_t rss_before = MemoryOf(edge, "VmRSS");

  std::unique_ptr<SlowReader> stalled = StartBigReplies("stalled", kReplies);
  ASSERT_NE(stalled, nullptr);
  ASSERT_FALSE(stack_->edge().WaitForLine("client is not keeping up").empty());

  // Another client's reply on the same edge streams in full while the first one is stuck.
  ASSERT_TRUE((*reader)->SendJson(Message("meanwhile", "")).ok());
  std::optional<std::pair<std::string, Reply>> reply = ReadWholeReply(**reader);
  ASSERT_TRUE(reply.has_value());
  const auto& [message_id, received] = *reply;
  EXPECT_FALSE(received.out_of_order);
  EXPECT_EQ(Int(*received.end, "lastSeq"), received.last_seq);
  EXPECT_FALSE(received.text.empty());
  EXPECT_EQ(received.text, Stored("reader", message_id).content());

  // The upstream offered 40 MB for the stalled client; the edge took only what its bounds allow:
  // what the kernel buffers for the socket (~3 MB, which the replies' own text also holds), the
  // outbound queue, and one gRPC stream window per reply. That came to 12 to 17 MiB over runs
  // of a release build (the windows gRPC grows by its own estimate vary from run to run), so the
  // bound is 24 MiB: buffering the 40 MB offered would still be far past it.
  const int64_t peak_growth = MemoryOf(edge, "VmHWM") - rss_before;
  std::printf("edge peak RSS growth: %.1f MiB for %.1f MB offered\n", peak_growth / 1048576.0,
              kReplies * BigReplyText().size() / 1e6);
  EXPECT_LT(peak_growth, kSanitizerMemoryFactor * 24 * 1024 * 1024);
}

TEST_F(EdgeBackpressureTest, AStalledClientIsClosedWhileItsRepliesCompleteAndAreStored) {
  constexpr int kReplies = 5;
  ASSERT_NO_FATAL_FAILURE(StartStack(kReplies, {"--slow_client_timeout_ms=1000"}));
  std::unique_ptr<SlowReader> stalled = StartBigReplies("stalled", kReplies);
  ASSERT_NE(stalled, nullptr);
  ASSERT_FALSE(stack_->edge().WaitForLine("closing a slow client").empty());

  // What was already on its way still arrives, in order, then the close: 1008.
  std::map<std::string, Reply> replies;
  while (std::optional<json::object> frame = stalled->Read()) {
    ASSERT_TRUE(Record(*frame, replies));
  }
  EXPECT_EQ(stalled->close_code(), 1008) << stalled->error();
  EXPECT_GE(Metric(stack_->edge_address(), "parley_edge_slow_client_closes_total"), 1);

  // Closing the client did not stop its replies: each one runs to its end and is stored whole.
  const std::vector<persistence_pb::Message> listed = AssistantReplies("stalled");
  EXPECT_EQ(listed.size(), static_cast<size_t>(kReplies));
  const std::string full_text = BigReplyText();
  for (const persistence_pb::Message& message : listed) {
    WaitUntilStored("stalled", message.id());
    const persistence_pb::Message stored = Stored("stalled", message.id());
    EXPECT_EQ(stored.status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
    EXPECT_EQ(stored.content(), full_text);
    const Reply& received = replies[message.id()];
    EXPECT_FALSE(received.out_of_order);
    EXPECT_TRUE(absl::StartsWith(full_text, received.text));
  }
}

TEST_F(EdgeBackpressureTest, AClosedClientThatNeverReadsAgainIsDropped) {
  constexpr int kReplies = 5;
  ASSERT_NO_FATAL_FAILURE(StartStack(kReplies, {"--slow_client_timeout_ms=1000"}));
  std::unique_ptr<SlowReader> gone = StartBigReplies("gone", kReplies);
  ASSERT_NE(gone, nullptr);
  ASSERT_FALSE(stack_->edge().WaitForLine("closing a slow client").empty());
  // The client reads nothing more, so its close frame never goes out; the edge lets go of the
  // connection anyway (the gauge counts open WebSockets) rather than holding it until the idle
  // timeout, and its replies are still stored whole.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (Metric(stack_->edge_address(), "parley_edge_connections") != 0 && absl::Now() < deadline) {
  }
  EXPECT_EQ(Metric(stack_->edge_address(), "parley_edge_connections"), 0);
  const std::vector<persistence_pb::Message> listed = AssistantReplies("gone");
  EXPECT_EQ(listed.size(), static_cast<size_t>(kReplies));
  for (const persistence_pb::Message& message : listed) {
    WaitUntilStored("gone", message.id());
    EXPECT_EQ(Stored("gone", message.id()).status(), persistence_pb::MESSAGE_STATUS_COMPLETE);
  }
}

TEST_F(EdgeBackpressureTest, ASlowReaderGetsMergedTokensThatLoseNothing) {
  constexpr int kReplies = 5;
  ASSERT_NO_FATAL_FAILURE(StartStack(kReplies, {"--slow_client_timeout_ms=0"}));
  std::unique_ptr<SlowReader> slow = StartBigReplies("slow", kReplies);
  ASSERT_NE(slow, nullptr);
  // The client pauses until the edge has had to hold its replies back, then reads everything.
  ASSERT_FALSE(stack_->edge().WaitForLine("client is not keeping up").empty());

  std::map<std::string, Reply> replies;
  int complete = 0;
  while (complete < kReplies) {
    std::optional<json::object> frame = slow->Read();
    ASSERT_TRUE(frame.has_value()) << "closed with " << slow->close_code() << slow->error();
    ASSERT_TRUE(Record(*frame, replies));
    if (Str(*frame, "type") == "stream_complete") {
      ++complete;
    }
  }

  const std::string full_text = BigReplyText();
  int merged_frames = 0;
  for (const auto& [message_id, received] : replies) {
    ASSERT_TRUE(received.end.has_value());
    EXPECT_FALSE(received.out_of_order);
    EXPECT_EQ(Int(*received.end, "lastSeq"), received.last_seq);
    // Inference may already have merged deltas that waited behind a write: seqs number the
    // deltas the edge got, never more than the engine's.
    EXPECT_GE(received.last_seq, 1);
    EXPECT_LE(received.last_seq, kDeltasPerReply);
    EXPECT_EQ(received.text, full_text);
    EXPECT_EQ(Stored("slow", message_id).content(), full_text);
    // Fewer frames than the engine's deltas: merged on the way, by inference (while its write
    // was in flight) or by the edge (while the socket's was). Which one does it depends on where
    // the deltas waited, so neither is required here; OutboundQueueTest covers the edge's own.
    merged_frames += received.frames < kDeltasPerReply ? 1 : 0;
  }
  EXPECT_EQ(replies.size(), static_cast<size_t>(kReplies));
  EXPECT_GT(merged_frames, 0);
}

}  // namespace
}  // namespace parley
