#include "tools/parley-bench/upstream_server.h"

#include <array>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/json.hpp"
#include "tools/parley-bench/listen.h"

namespace parley::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

// The text of the request's last message: the user's words of the turn, which the load
// generator makes unique per run so the record can be matched to it.
std::string LastMessageText(const std::string& body) {
  json::error_code ec;
  const json::value request = json::parse(body, ec);
  const json::object* object = ec ? nullptr : request.if_object();
  const json::value* messages = object ? object->if_contains("messages") : nullptr;
  if (messages == nullptr || !messages->is_array() || messages->as_array().empty()) {
    return "";
  }
  const json::object* last = messages->as_array().back().if_object();
  const json::value* content = last ? last->if_contains("content") : nullptr;
  return content != nullptr && content->is_string() ? std::string(content->get_string()) : "";
}

std::string ChunkedEvent(const json::object& chunk) {
  const std::string event = absl::StrCat("data: ", json::serialize(chunk), "\n\n");
  return absl::StrFormat("%x\r\n%s\r\n", event.size(), event);
}

std::string Delta(json::object delta) {
  return ChunkedEvent(
      {{"id", "chatcmpl-bench"},
       {"object", "chat.completion.chunk"},
       {"created", 0},
       {"model", "bench-upstream"},
       {"choices", json::array{json::object{
                       {"index", 0}, {"delta", std::move(delta)}, {"finish_reason", nullptr}}}}});
}

}  // namespace

int64_t MonotonicNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct UpstreamServer::State : std::enable_shared_from_this<UpstreamServer::State> {
  State(asio::io_context& ioc, int content_chunks) : ioc(ioc), acceptor(ioc) {
    stream_head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    absl::StrAppend(&stream_head, Delta({{"role", "assistant"}, {"content", ""}}));
    for (int i = 0; i < content_chunks; ++i) {
      absl::StrAppend(&stream_head, Delta({{"content", absl::StrCat("part ", i + 1, ". ")}}));
    }
  }

  void Accept();

  size_t RecordRequest(std::string key) {
    absl::MutexLock lock(&mutex);
    requests.push_back({std::move(key), MonotonicNanos(), std::nullopt});
    return requests.size() - 1;
  }

  void RecordClose(size_t index) {
    const int64_t now = MonotonicNanos();
    absl::MutexLock lock(&mutex);
    requests[index].closed_ns = now;
  }

  std::string Report() {
    json::array out;
    absl::MutexLock lock(&mutex);
    for (const Request& r : requests) {
      json::object o{{"key", r.key}, {"request_ns", r.request_ns}};
      o["closed_ns"] = r.closed_ns.has_value() ? json::value(*r.closed_ns) : json::value(nullptr);
      out.push_back(std::move(o));
    }
    return json::serialize(json::object{{"requests", std::move(out)}});
  }

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  std::string stream_head;

  struct Request {
    std::string key;
    int64_t request_ns = 0;
    std::optional<int64_t> closed_ns;
  };
  absl::Mutex mutex;
  std::vector<Request> requests ABSL_GUARDED_BY(mutex);
};

namespace {

class UpstreamSession : public std::enable_shared_from_this<UpstreamSession> {
 public:
  UpstreamSession(tcp::socket socket, std::shared_ptr<UpstreamServer::State> state)
      : socket_(std::move(socket)), state_(std::move(state)) {}

  void Start() {
    beast::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    ReadRequest();
  }

 private:
  void ReadRequest() {
    request_ = {};
    http::async_read(socket_, buffer_, request_,
                     beast::bind_front_handler(&UpstreamSession::OnRequest, shared_from_this()));
  }

  void OnRequest(beast::error_code ec, size_t /*bytes*/) {
    if (ec) {
      return;
    }
    const beast::string_view target = request_.target();
    if (request_.method() == http::verb::post &&
        absl::EndsWith(absl::string_view(target.data(), target.size()), "/chat/completions")) {
      Stream();
    } else if (request_.method() == http::verb::get && target == "/bench/upstream_requests") {
      Answer(http::status::ok, state_->Report());
    } else {
      Answer(http::status::not_found, R"({"error":{"message":"not found","type":"not_found"}})");
    }
  }

  void Stream() {
    index_ = state_->RecordRequest(LastMessageText(request_.body()));
    asio::async_write(socket_, asio::buffer(state_->stream_head),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) {
                          self->state_->RecordClose(self->index_);
                          return;
                        }
                        self->Hold();
                      });
  }

  // Nothing more is sent: the request ends only when the client closes the connection.
  void Hold() {
    socket_.async_read_some(asio::buffer(sink_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) {
                                self->state_->RecordClose(self->index_);
                                return;
                              }
                              self->Hold();
                            });
  }

  void Answer(http::status status, std::string body) {
    auto response = std::make_shared<http::response<http::string_body>>(status, 11);
    response->set(http::field::content_type, "application/json");
    response->body() = std::move(body);
    response->prepare_payload();
    http::async_write(socket_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, size_t) {
                        if (!ec) {
                          self->ReadRequest();
                        }
                      });
  }

  tcp::socket socket_;
  std::shared_ptr<UpstreamServer::State> state_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  size_t index_ = 0;
  std::array<char, 256> sink_{};
};

}  // namespace

void UpstreamServer::State::Accept() {
  acceptor.async_accept(asio::make_strand(ioc),
                        [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                          if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) {
                            return;
                          }
                          if (!ec) {
                            std::make_shared<UpstreamSession>(std::move(socket), self)->Start();
                          }
                          self->Accept();
                        });
}

UpstreamServer::UpstreamServer(asio::io_context& ioc, int content_chunks)
    : state_(std::make_shared<State>(ioc, content_chunks)) {}

UpstreamServer::~UpstreamServer() { Stop(); }

absl::StatusOr<uint16_t> UpstreamServer::Listen(const std::string& host, uint16_t port) {
  absl::StatusOr<uint16_t> bound = BindAndListen(state_->acceptor, host, port);
  if (bound.ok()) {
    state_->Accept();
  }
  return bound;
}

void UpstreamServer::Stop() {
  asio::post(state_->acceptor.get_executor(), [state = state_] {
    beast::error_code ec;
    state->acceptor.close(ec);
  });
}

}  // namespace parley::bench
