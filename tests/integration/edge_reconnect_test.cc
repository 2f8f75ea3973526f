// A client that reconnects the way seed 000's app does (up to 5 attempts, 3 s apart, then
// `resume` of the reply that was streaming) loses no text when its connection drops mid-reply:
// what it shows is exactly the stored reply. Against the three real binaries.
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley {
namespace {

namespace json = boost::json;
using ::parley::testing::Int;
using ::parley::testing::ParleyStack;
using ::parley::testing::ReadUntil;
using ::parley::testing::StackOptions;
using ::parley::testing::Str;
using ::parley::testing::WsClient;

// The reconnect policy of seed 000's streaming-chat hook.
struct ReconnectPolicy {
  int attempts = 5;
  absl::Duration interval = absl::Seconds(3);
};

// Seed 000's hook as far as the edge sees it: one connection to /ws/chat, text appended from
// stream_token, done at stream_complete; when the connection drops it waits `interval`, connects
// again (up to `attempts` times) and resumes the reply it was showing from the last seq it got.
class Seed000Client {
 public:
  Seed000Client(std::string address, std::string user, ReconnectPolicy policy)
      : address_(std::move(address)), user_(std::move(user)), policy_(policy) {}

  absl::Status Connect() {
    absl::Status last = absl::UnavailableError("no attempt made");
    for (int attempt = 1; attempt <= policy_.attempts; ++attempt) {
      absl::StatusOr<std::unique_ptr<WsClient>> client =
          WsClient::Connect(address_, absl::StrCat("/ws/chat?userId=", user_), {"parley.v1"});
      if (client.ok()) {
        client_ = *std::move(client);
        return absl::OkStatus();
      }
      last = client.status();
      absl::SleepFor(policy_.interval);  // The hook's fixed delay between attempts.
    }
    return last;
  }

  // The network goes away: the socket closes without a close frame.
  void LoseConnection() { client_.reset(); }

  absl::Status Reconnect() {
    absl::SleepFor(policy_.interval);
    if (absl::Status connected = Connect(); !connected.ok()) {
      return connected;
    }
    return client_->SendJson(
        {{"type", "resume"}, {"messageId", message_id_}, {"lastSeq", last_seq_}});
  }

  absl::Status Send(const std::string& id, const std::string& content) {
    return client_->SendJson({{"type", "message"}, {"id", id}, {"content", content}});
  }

  // Reads frames until `tokens` more have been shown, or the reply is done.
  absl::Status Show(int tokens) {
    for (int shown = 0; shown < tokens && !done_;) {
      absl::StatusOr<json::object> frame = client_->ReadJson();
      if (!frame.ok()) {
        return frame.status();
      }
      const std::string type = Str(*frame, "type");
      if (type == "ack") {
        conversation_id_ = Str(*frame, "conversationId");
      } else if (type == "stream_start") {
        message_id_ = Str(*frame, "messageId");
      } else if (type == "stream_token") {
        const int64_t seq = Int(*frame, "seq");
        if (seq <= last_seq_) {
          return absl::InternalError(absl::StrCat("seq ", seq, " shown twice"));
        }
        text_ += Str(*frame, "token");
        last_seq_ = seq;
        ++shown;
      } else if (type == "stream_complete") {
        done_ = true;
      } else if (type == "resumed") {
        if (!frame->at("recovered").as_bool()) {
          return absl::NotFoundError("the reply was not recovered");
        }
      } else if (type != "heartbeat" && type != "stream_reasoning") {
        return absl::InternalError(absl::StrCat("unexpected frame ", json::serialize(*frame)));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ShowToTheEnd() { return Show(1 << 30); }

  WsClient& client() { return *client_; }
  const std::string& conversation_id() const { return conversation_id_; }
  const std::string& message_id() const { return message_id_; }
  const std::string& text() const { return text_; }
  bool done() const { return done_; }

 private:
  const std::string address_;
  const std::string user_;
  const ReconnectPolicy policy_;
  std::unique_ptr<WsClient> client_;
  std::string conversation_id_;
  std::string message_id_;
  std::string text_;
  int64_t last_seq_ = 0;
  bool done_ = false;
};

TEST(EdgeReconnectTest, ASeed000ClientThatReconnectsMidReplyLosesNoText) {
  std::unique_ptr<ParleyStack> stack = ParleyStack::Start(StackOptions{
      // Long enough a reply that the connection drops while it streams.
      .inference_flags = {"--sim_ttft_ms=1", "--sim_tokens_per_second=200", "--sim_max_tokens=120"},
  });
  ASSERT_NE(stack, nullptr);
  Seed000Client app(stack->edge_address(), "seed-000", ReconnectPolicy{});
  ASSERT_TRUE(app.Connect().ok());
  ASSERT_TRUE(app.Send("q-1", "Tell me a long story.").ok());
  ASSERT_TRUE(app.Show(3).ok());
  ASSERT_FALSE(app.done());
  app.LoseConnection();

  ASSERT_TRUE(app.Reconnect().ok());
  const absl::Status shown = app.ShowToTheEnd();
  ASSERT_TRUE(shown.ok()) << shown;
  ASSERT_TRUE(app.done());

  // What the app shows is the stored reply, character for character.
  ASSERT_TRUE(
      app.client().SendJson({{"type", "history"}, {"conversationId", app.conversation_id()}}).ok());
  std::optional<json::object> history = ReadUntil(app.client(), "history");
  ASSERT_TRUE(history.has_value());
  const json::array& messages = history->at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u) << json::serialize(*history);
  const json::object& reply = messages[1].as_object();
  EXPECT_EQ(Str(reply, "id"), app.message_id());
  EXPECT_EQ(Str(reply, "status"), "complete");
  EXPECT_EQ(Str(reply, "content"), app.text());
}

}  // namespace
}  // namespace parley
