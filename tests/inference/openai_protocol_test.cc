#include "inference/engines/openai_protocol.h"

#include "boost/json.hpp"
#include "gtest/gtest.h"

namespace parley::inference {
namespace {

namespace json = boost::json;

TEST(OpenAiProtocolTest, BodyAsksForAStreamWithUsageAndAppliesDefaults) {
  v1::GenerateRequest request;
  v1::ChatMessage* system = request.add_messages();
  system->set_role(v1::ROLE_SYSTEM);
  system->set_content("Be brief.");
  v1::ChatMessage* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("Hi");
  request.mutable_sampling()->set_max_tokens(64);
  request.mutable_sampling()->add_stop("\n\n");
  SamplingDefaults defaults;
  defaults.temperature = 0.5;
  defaults.max_tokens = 1000;

  const json::value body = json::parse(BuildChatCompletionBody(request, "llama-3", defaults));
  EXPECT_EQ(body.at("model"), "llama-3");
  EXPECT_EQ(body.at("stream"), true);
  EXPECT_EQ(body.at("stream_options").at("include_usage"), true);
  EXPECT_EQ(body.at("messages").at(0).at("role"), "system");
  EXPECT_EQ(body.at("messages").at(1).at("content"), "Hi");
  EXPECT_EQ(body.at("temperature").as_double(), 0.5);
  EXPECT_EQ(body.at("max_tokens").to_number<int>(), 64);  // The request wins over the default.
  EXPECT_EQ(body.at("stop").at(0), "\n\n");
  EXPECT_EQ(body.as_object().if_contains("top_p"), nullptr);
}

TEST(OpenAiProtocolTest, MapsDeltasFinishAndUsage) {
  StreamEvent event;
  ASSERT_TRUE(ParseStreamEvent(
                  R"({"choices":[{"index":0,"delta":{"reasoning_content":"hm","content":"Hi"},)"
                  R"("finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,)"
                  R"("completion_tokens_details":{"reasoning_tokens":1}}})",
                  event)
                  .ok());
  ASSERT_EQ(event.deltas.size(), 2u);
  EXPECT_EQ(event.deltas[0].reasoning_delta().text(), "hm");
  EXPECT_EQ(event.deltas[1].text_delta().text(), "Hi");
  EXPECT_EQ(event.finish, v1::FINISH_REASON_LENGTH);
  ASSERT_TRUE(event.usage.has_value());
  EXPECT_EQ(event.usage->prompt_tokens(), 3);
  EXPECT_EQ(event.usage->completion_tokens(), 2);
  EXPECT_EQ(event.usage->reasoning_tokens(), 1);
  EXPECT_FALSE(event.usage->estimated());
}

TEST(OpenAiProtocolTest, DoneErrorAndMalformedEvents) {
  StreamEvent done;
  ASSERT_TRUE(ParseStreamEvent("[DONE]", done).ok());
  EXPECT_TRUE(done.done);

  StreamEvent error_event;
  const absl::Status error =
      ParseStreamEvent(R"({"error":{"message":"overloaded","type":"server_error"}})", error_event);
  EXPECT_EQ(error.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(error.message().find("overloaded"), absl::string_view::npos);

  StreamEvent malformed;
  EXPECT_EQ(ParseStreamEvent(R"({"choices":[{"delta":)", malformed).code(),
            absl::StatusCode::kInternal);
}

TEST(OpenAiProtocolTest, HttpErrorsMapToCanonicalCodesWithTheUpstreamMessage) {
  const std::string body = R"({"error":{"message":"nope","type":"x"}})";
  EXPECT_EQ(StatusFromHttpError(400, body).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusFromHttpError(401, body).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(StatusFromHttpError(403, body).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(StatusFromHttpError(404, body).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(StatusFromHttpError(429, body).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusFromHttpError(500, body).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromHttpError(503, "busy").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromHttpError(401, body).message(), "upstream HTTP 401: nope");
  EXPECT_EQ(StatusFromHttpError(503, "busy").message(), "upstream HTTP 503: busy");
}

}  // namespace
}  // namespace parley::inference
