#include "tools/parley-bench/deadline_workload.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/json.hpp"
#include "tools/parley-bench/stats.h"
#include "tools/parley-bench/upstream_server.h"

namespace parley::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

constexpr char kDeadlineHeader[] = "X-Parley-Deadline-Ms";

const char* PathName(DeadlinePath path) {
  switch (path) {
    case DeadlinePath::kNative:
      return "native";
    case DeadlinePath::kOpenAi:
      return "openai";
    case DeadlinePath::kAiSdk:
      return "ai_sdk";
  }
  return "";
}

// What one turn ended with, on the client's clock.
struct Turn {
  std::string key;  // the user's words, unique per turn, by which the upstream record is found
  int64_t sent_ns = 0;
  int64_t ended_ns = 0;
  std::string error;  // the code the client was told; empty when the turn did not end in error
  std::string failure;
};

// Blocking reads give up after `timeout` instead of waiting for a reply that never ends.
void SetReadTimeout(tcp::socket& socket, absl::Duration timeout) {
  const timeval tv = absl::ToTimeval(timeout);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

absl::Status Connect(tcp::socket& socket, const std::string& host, uint16_t port,
                     absl::Duration timeout) {
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) {
    socket.connect(tcp::endpoint(address, port), ec);
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat("connect ", host, ":", port, ": ", ec.message()));
  }
  socket.set_option(tcp::no_delay(true), ec);
  SetReadTimeout(socket, timeout);
  return absl::OkStatus();
}

// The error code an SSE event's JSON carries: OpenAI's `{"error":{"code":…}}`, or the UI
// message stream's `{"type":"error","errorText":"code: message"}`; nullopt for other events.
std::optional<std::string> ErrorCodeOf(const json::object& event) {
  if (const json::value* error = event.if_contains("error"); error && error->is_object()) {
    const json::value* code = error->as_object().if_contains("code");
    return code && code->is_string() ? std::string(code->get_string()) : std::string("?");
  }
  const json::value* type = event.if_contains("type");
  if (type && type->is_string() && type->get_string() == "error") {
    const json::value* text = event.if_contains("errorText");
    if (text == nullptr || !text->is_string()) {
      return std::string("?");
    }
    const std::string whole(text->get_string());
    return whole.substr(0, whole.find(':'));
  }
  return std::nullopt;
}

// One turn over HTTP: posts `body` to `target` and reads the event stream to its end, noting
// when the first error event arrived.
Turn HttpTurn(asio::io_context& ioc, const DeadlineOptions& o, const std::string& target,
              const json::object& body, std::string key) {
  Turn turn;
  turn.key = std::move(key);
  tcp::socket socket(ioc);
  if (absl::Status s = Connect(socket, o.host, o.port, o.turn_timeout); !s.ok()) {
    turn.failure = std::string(s.message());
    return turn;
  }
  http::request<http::string_body> request(http::verb::post, target, 11);
  request.set(http::field::host, absl::StrCat(o.host, ":", o.port));
  request.set(http::field::content_type, "application/json");
  request.set(kDeadlineHeader, absl::StrCat(o.deadline_ms));
  request.body() = json::serialize(body);
  request.prepare_payload();
  beast::error_code ec;
  turn.sent_ns = MonotonicNanos();
  http::write(socket, request, ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  if (!ec) {
    http::read_header(socket, buffer, parser, ec);
  }
  if (ec) {
    turn.failure = absl::StrCat("HTTP: ", ec.message());
    return turn;
  }
  if (parser.get().result_int() != 200) {
    turn.failure = absl::StrCat("HTTP status ", parser.get().result_int());
    return turn;
  }
  size_t scanned = 0;  // body bytes already split into events
  bool done = false;
  while (!parser.is_done() && !done) {
    http::read_some(socket, buffer, parser, ec);
    if (ec) {
      break;
    }
    const std::string& text = parser.get().body();
    for (size_t end = text.find("\n\n", scanned); end != std::string::npos;
         end = text.find("\n\n", scanned)) {
      const std::string event = text.substr(scanned, end - scanned);
      scanned = end + 2;
      if (event.rfind("data: ", 0) != 0) {
        continue;
      }
      const std::string data = event.substr(6);
      if (data == "[DONE]") {
        done = true;
        break;
      }
      json::error_code parse_error;
      const json::value value = json::parse(data, parse_error);
      if (parse_error || !value.is_object()) {
        continue;
      }
      if (std::optional<std::string> code = ErrorCodeOf(value.as_object());
          code.has_value() && turn.ended_ns == 0) {
        turn.ended_ns = MonotonicNanos();
        turn.error = *code;
      }
    }
  }
  if (turn.ended_ns == 0) {
    turn.failure = ec ? absl::StrCat("stream ended without an error event: ", ec.message())
                      : "stream ended without an error event";
  }
  return turn;
}

// The native protocol's client: one WebSocket connection for every turn.
class NativeClient {
 public:
  explicit NativeClient(asio::io_context& ioc) : ws_(ioc) {}

  absl::Status Open(const DeadlineOptions& o) {
    if (absl::Status s = Connect(ws_.next_layer(), o.host, o.port, o.turn_timeout); !s.ok()) {
      return s;
    }
    beast::error_code ec;
    ws_.handshake(absl::StrCat(o.host, ":", o.port), absl::StrCat("/ws/chat?userId=", o.user), ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("WebSocket handshake: ", ec.message()));
    }
    return absl::OkStatus();
  }

  Turn Run(const DeadlineOptions& o, std::string key) {
    Turn turn;
    turn.key = key;
    beast::error_code ec;
    const std::string frame = json::serialize(json::object{
        {"type", "message"}, {"id", key}, {"content", key}, {"deadlineMs", o.deadline_ms}});
    turn.sent_ns = MonotonicNanos();
    ws_.write(asio::buffer(frame), ec);
    while (!ec) {
      beast::flat_buffer buffer;
      ws_.read(buffer, ec);
      if (ec) {
        break;
      }
      json::error_code parse_error;
      const json::value value = json::parse(beast::buffers_to_string(buffer.data()), parse_error);
      const json::object* object = parse_error ? nullptr : value.if_object();
      const json::value* type = object ? object->if_contains("type") : nullptr;
      if (type == nullptr || !type->is_string()) {
        continue;
      }
      if (type->get_string() == "stream_interrupted") {
        turn.ended_ns = MonotonicNanos();
        const json::value* error = object->if_contains("error");
        turn.error = error && error->is_string() ? std::string(error->get_string()) : "?";
        return turn;
      }
      if (type->get_string() == "stream_complete" || type->get_string() == "error") {
        turn.failure = absl::StrCat("unexpected ", json::serialize(*object));
        return turn;
      }
    }
    turn.failure = absl::StrCat("WebSocket: ", ec.message());
    return turn;
  }

 private:
  websocket::stream<tcp::socket> ws_;
};

// The stand-in's record: request and close times by key.
struct UpstreamRecord {
  int64_t request_ns = 0;
  std::optional<int64_t> closed_ns;
};

absl::StatusOr<std::map<std::string, UpstreamRecord>> FetchUpstreamRecord(
    asio::io_context& ioc, const DeadlineOptions& o) {
  tcp::socket socket(ioc);
  if (absl::Status s = Connect(socket, o.upstream_host, o.upstream_port, absl::Seconds(10));
      !s.ok()) {
    return s;
  }
  http::request<http::empty_body> request(http::verb::get, "/bench/upstream_requests", 11);
  request.set(http::field::host, absl::StrCat(o.upstream_host, ":", o.upstream_port));
  beast::error_code ec;
  http::write(socket, request, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  if (!ec) {
    http::read(socket, buffer, response, ec);
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat("upstream record: ", ec.message()));
  }
  json::error_code parse_error;
  const json::value value = json::parse(response.body(), parse_error);
  const json::value* requests =
      parse_error || !value.is_object() ? nullptr : value.as_object().if_contains("requests");
  if (requests == nullptr || !requests->is_array()) {
    return absl::InternalError("upstream record is not {\"requests\":[…]}");
  }
  std::map<std::string, UpstreamRecord> out;
  for (const json::value& r : requests->as_array()) {
    const json::object& o = r.as_object();
    UpstreamRecord record;
    record.request_ns = o.at("request_ns").to_number<int64_t>();
    if (!o.at("closed_ns").is_null()) {
      record.closed_ns = o.at("closed_ns").to_number<int64_t>();
    }
    out[std::string(o.at("key").as_string())] = record;
  }
  return out;
}

double Ms(int64_t nanos) { return static_cast<double>(nanos) / 1e6; }

}  // namespace

absl::StatusOr<std::vector<DeadlinePath>> ParseDeadlinePaths(const std::string& text) {
  std::vector<DeadlinePath> paths;
  for (absl::string_view name : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    if (name == "native") {
      paths.push_back(DeadlinePath::kNative);
    } else if (name == "openai") {
      paths.push_back(DeadlinePath::kOpenAi);
    } else if (name == "ai_sdk") {
      paths.push_back(DeadlinePath::kAiSdk);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown deadline path '", name, "' (native, openai, ai_sdk)"));
    }
  }
  if (paths.empty()) {
    return absl::InvalidArgumentError("no deadline path given (native, openai, ai_sdk)");
  }
  return paths;
}

json::object RunDeadline(const DeadlineOptions& o) {
  asio::io_context ioc;
  NativeClient native(ioc);
  std::string open_failure;
  for (DeadlinePath path : o.paths) {
    if (path == DeadlinePath::kNative) {
      if (absl::Status s = native.Open(o); !s.ok()) {
        open_failure = std::string(s.message());
      }
    }
  }
  // Turns on the paths alternate, so that a change in the machine's load falls on all of them.
  std::map<DeadlinePath, std::vector<Turn>> turns;
  const std::string run_id = absl::StrCat(getpid(), "-", absl::ToUnixMillis(absl::Now()));
  for (int64_t i = 0; i < o.runs; ++i) {
    for (DeadlinePath path : o.paths) {
      const std::string key = absl::StrCat("deadline ", PathName(path), " ", run_id, " ", i);
      Turn turn;
      turn.key = key;
      switch (path) {
        case DeadlinePath::kNative:
          if (open_failure.empty()) {
            turn = native.Run(o, key);
          } else {
            turn.failure = open_failure;
          }
          break;
        case DeadlinePath::kOpenAi:
          turn = HttpTurn(
              ioc, o, "/v1/chat/completions",
              {{"model", "bench-upstream"},
               {"stream", true},
               {"user", o.user},
               {"messages", json::array{json::object{{"role", "user"}, {"content", key}}}}},
              key);
          break;
        case DeadlinePath::kAiSdk: {
          const std::string chat_id = absl::StrCat("bench-deadline-", run_id, "-", i);
          turn = HttpTurn(
              ioc, o, absl::StrCat("/api/chat?userId=", o.user),
              {{"id", chat_id},
               {"trigger", "submit-message"},
               {"messages",
                json::array{json::object{
                    {"id", absl::StrCat("u-", i)},
                    {"role", "user"},
                    {"parts", json::array{json::object{{"type", "text"}, {"text", key}}}}}}}},
              key);
          break;
        }
      }
      if (!turn.failure.empty()) {
        std::fprintf(stderr, "deadline: %s run %lld failed: %s\n", PathName(path),
                     static_cast<long long>(i), turn.failure.c_str());
      }
      turns[path].push_back(std::move(turn));
    }
  }

  // parley-inference closes the upstream request about when the client hears of the deadline,
  // not necessarily before: wait a little for the last closes to be recorded.
  std::map<std::string, UpstreamRecord> record;
  std::string record_failure;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  for (;;) {
    absl::StatusOr<std::map<std::string, UpstreamRecord>> fetched = FetchUpstreamRecord(ioc, o);
    if (!fetched.ok()) {
      record_failure = std::string(fetched.status().message());
      break;
    }
    record = std::move(*fetched);
    bool all_closed = true;
    for (const auto& [path, list] : turns) {
      for (const Turn& t : list) {
        auto it = record.find(t.key);
        all_closed = all_closed && (it == record.end() || it->second.closed_ns.has_value());
      }
    }
    if (all_closed || absl::Now() > give_up) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }

  json::object by_path;
  for (DeadlinePath path : o.paths) {
    std::vector<double> client_after_deadline;
    std::vector<double> upstream_after_deadline;
    std::vector<double> upstream_after_client;
    std::vector<double> upstream_request_after_send;
    int64_t deadline_exceeded = 0;
    int64_t other_errors = 0;
    int64_t failed = 0;
    int64_t upstream_missing = 0;
    int64_t upstream_open = 0;
    for (const Turn& t : turns[path]) {
      if (!t.failure.empty()) {
        ++failed;
        continue;
      }
      const int64_t deadline_ns = t.sent_ns + o.deadline_ms * 1'000'000;
      if (t.error == "deadline_exceeded") {
        ++deadline_exceeded;
        client_after_deadline.push_back(Ms(t.ended_ns - deadline_ns));
      } else {
        ++other_errors;
      }
      auto it = record.find(t.key);
      if (it == record.end()) {
        ++upstream_missing;
        continue;
      }
      upstream_request_after_send.push_back(Ms(it->second.request_ns - t.sent_ns));
      if (!it->second.closed_ns.has_value()) {
        ++upstream_open;
        continue;
      }
      upstream_after_deadline.push_back(Ms(*it->second.closed_ns - deadline_ns));
      upstream_after_client.push_back(Ms(*it->second.closed_ns - t.ended_ns));
    }
    by_path[PathName(path)] = json::object{
        {"runs", static_cast<int64_t>(turns[path].size())},
        {"deadline_exceeded", deadline_exceeded},
        {"other_errors", other_errors},
        {"failed", failed},
        {"upstream_request_missing", upstream_missing},
        {"upstream_still_open", upstream_open},
        {"upstream_request_ms_after_send", ToJson(Summarize(upstream_request_after_send))},
        {"client_ms_after_deadline", ToJson(Summarize(client_after_deadline))},
        {"upstream_closed_ms_after_deadline", ToJson(Summarize(upstream_after_deadline))},
        {"upstream_closed_ms_after_client", ToJson(Summarize(upstream_after_client))},
    };
  }
  json::object result{{"workload", "deadline"},
                      {"config",
                       {{"target", absl::StrCat(o.host, ":", o.port)},
                        {"upstream", absl::StrCat(o.upstream_host, ":", o.upstream_port)},
                        {"deadline_ms", o.deadline_ms},
                        {"runs_per_path", o.runs}}},
                      {"paths", std::move(by_path)}};
  if (!record_failure.empty()) {
    result["upstream_record_failure"] = record_failure;
  }
  return result;
}

}  // namespace parley::bench
