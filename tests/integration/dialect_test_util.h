#pragma once

// Shared by the dialect integration tests: the upstream's replies in the OpenAI streaming shape,
// the stack on the openai engine behind a fake upstream, and reading what the edge stored.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "tests/inference/fake_openai_server.h"
#include "tests/support/parley_stack.h"
#include "tests/support/ws_client.h"

namespace parley::testing {

// The public (and upstream) model name of the stack's one model. The dialects' clients ask for
// other names ("gpt-4o"), which this one answers.
inline constexpr char kTestModel[] = "parley-test-model";

inline std::string DeltaEvent(const std::string& text) {
  boost::json::object delta{{"content", text}};
  boost::json::object choice{{"index", 0}, {"delta", delta}, {"finish_reason", nullptr}};
  return absl::StrCat(
      "data: ",
      boost::json::serialize(boost::json::object{{"choices", boost::json::array{choice}}}), "\n\n");
}

// A whole streamed reply: one server-sent event (and one write) per piece, then the finish
// reason, the usage and [DONE].
inline inference::testing::FakeReply StreamedReply(const std::vector<std::string>& pieces,
                                                   int completion_tokens) {
  std::vector<std::string> events;
  for (const std::string& piece : pieces) {
    events.push_back(DeltaEvent(piece));
  }
  events.push_back(
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
  events.push_back(absl::StrCat("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,",
                                "\"completion_tokens\":", completion_tokens, "}}\n\n"));
  events.push_back("data: [DONE]\n\n");
  inference::testing::FakeReply reply = inference::testing::SseReply(events);
  // Each piece reaches the edge as its own delta.
  reply.pause_between_writes = absl::Milliseconds(20);
  return reply;
}

// A reply the upstream breaks off after `pieces`: no finish, no [DONE], the connection closed.
inline inference::testing::FakeReply BrokenReply(const std::vector<std::string>& pieces) {
  std::vector<std::string> events;
  for (const std::string& piece : pieces) {
    events.push_back(DeltaEvent(piece));
  }
  inference::testing::FakeReply reply =
      inference::testing::SseReply(events, /*finish_message=*/false);
  reply.pause_between_writes = absl::Milliseconds(20);
  reply.then = inference::testing::FakeReply::Then::kClose;
  return reply;
}

// The three binaries with inference on the openai engine in front of `upstream`.
inline std::unique_ptr<ParleyStack> StartWithUpstream(
    const inference::testing::FakeOpenAiServer& upstream,
    std::vector<std::string> edge_flags = {}) {
  return ParleyStack::Start(StackOptions{
      .inference_flags = {"--engine=openai", absl::StrCat("--upstream_url=", upstream.url()),
                          absl::StrCat("--upstream_model=", kTestModel)},
      .edge_flags = std::move(edge_flags),
  });
}

inline std::set<std::string> Keys(const boost::json::object& frame) {
  std::set<std::string> keys;
  for (const auto& field : frame) {
    keys.emplace(field.key());
  }
  return keys;
}

// A field of a frame; null when it is absent.
inline boost::json::value Val(const boost::json::object& frame, const char* key) {
  const boost::json::value* value = frame.if_contains(key);
  return value != nullptr ? *value : boost::json::value();
}

// An object field of a frame; empty when it is absent or of another type.
inline boost::json::object Obj(const boost::json::object& frame, const char* key) {
  const boost::json::value* value = frame.if_contains(key);
  return value != nullptr && value->is_object() ? value->get_object() : boost::json::object();
}

inline int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

// The stored messages of `conversation_id`, oldest first, through the HTTP API.
inline boost::json::array StoredMessages(const std::string& edge, const std::string& user,
                                         const std::string& conversation_id) {
  absl::StatusOr<HttpResponse> response =
      HttpGet(edge, absl::StrCat("/v1/conversations/", conversation_id, "/messages?userId=", user));
  if (!response.ok() || response->status != 200) {
    ADD_FAILURE() << "cannot read conversation " << conversation_id << ": "
                  << (response.ok() ? response->body : response.status().ToString());
    return {};
  }
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(response->body, ec);
  if (ec || !body.is_object() || !body.as_object().contains("messages")) {
    ADD_FAILURE() << "unexpected messages body: " << response->body;
    return {};
  }
  return body.as_object().at("messages").as_array();
}

// The ids of the user's conversations, newest first, through the HTTP API.
inline std::vector<std::string> ConversationIds(const std::string& edge, const std::string& user) {
  std::vector<std::string> ids;
  absl::StatusOr<HttpResponse> response =
      HttpGet(edge, absl::StrCat("/v1/conversations?userId=", user));
  if (!response.ok() || response->status != 200) {
    ADD_FAILURE() << "cannot list conversations of " << user;
    return ids;
  }
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(response->body, ec);
  if (ec || !body.is_object()) {
    ADD_FAILURE() << "unexpected conversations body: " << response->body;
    return ids;
  }
  for (const boost::json::value& conversation : body.as_object().at("conversations").as_array()) {
    ids.emplace_back(conversation.as_object().at("id").as_string());
  }
  return ids;
}

// The status of a WebSocket upgrade request for `target`: 101 when it was accepted.
inline int UpgradeStatus(const std::string& edge, const std::string& target,
                         std::vector<std::pair<std::string, std::string>> headers = {}) {
  headers.insert(headers.end(), {{"Upgrade", "websocket"},
                                 {"Connection", "Upgrade"},
                                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                 {"Sec-WebSocket-Version", "13"}});
  absl::StatusOr<HttpResponse> response = HttpRequest(edge, "GET", target, "", headers);
  return response.ok() ? response->status : 0;
}

}  // namespace parley::testing
