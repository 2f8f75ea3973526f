#include "edge/server/http_chat_exchange.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/http/status.hpp"
#include "edge/server/chat_connection.h"
#include "edge/server/server_context.h"

namespace parley::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

// Bounds each write; a client that takes longer to read a piece is gone.
constexpr absl::Duration kWriteTimeout = absl::Seconds(30);

std::string Chunk(absl::string_view piece) {
  return absl::StrCat(absl::Hex(piece.size()), "\r\n", piece, "\r\n");
}

}  // namespace

HttpChatExchange::HttpChatExchange(ServerContext& context, HttpHandoff handoff,
                                   std::unique_ptr<ExchangeResponder> responder,
                                   std::string path_label, HttpHeaders common_headers)
    : context_(context),
      stream_(std::move(handoff.stream)),
      buffer_(std::move(handoff.buffer)),
      request_(std::move(handoff.request)),
      responder_(std::move(responder)),
      path_label_(std::move(path_label)),
      common_headers_(std::move(common_headers)) {}

HttpChatExchange::~HttpChatExchange() = default;

void HttpChatExchange::Start(ChatUser user, ChatOptions options, Command command,
                             common::TraceContext trace) {
  self_ = shared_from_this();
  // Requests of the HTTP chat APIs (OpenAI-compatible, AI SDK) count under their own `dialect`.
  chat_ = std::make_shared<ChatConnection>(context_, context_.metrics.Dialect("http"),
                                           stream_.get_executor(), std::move(user),
                                           std::move(options), weak_from_this(), std::move(trace));
  chat_->Handle(std::move(command));
}

void HttpChatExchange::RespondNow(unsigned status, absl::string_view content_type, std::string body,
                                  HttpHeaders headers) {
  self_ = shared_from_this();
  Respond(status, content_type, std::move(body), std::move(headers));
}

void HttpChatExchange::Emit(Event event, std::optional<Clock::time_point> /*arrival*/) {
  if (phase_ == Phase::kWaiting || phase_ == Phase::kStreaming) {
    responder_->OnEvent(event, *this);
  }
}

bool HttpChatExchange::Writable() const {
  return phase_ == Phase::kClosed || queued_bytes_ < kHighWaterBytes;
}

void HttpChatExchange::WhenWritable(std::function<void()> resume) {
  if (Writable()) {
    return resume();
  }
  waiting_for_writable_.push_back(std::move(resume));
}

std::string HttpChatExchange::Head(unsigned status, absl::string_view content_type,
                                   HttpHeaders headers,
                                   std::optional<size_t> content_length) const {
  const beast::string_view reason = http::obsolete_reason(static_cast<http::status>(status));
  std::string head =
      absl::StrCat("HTTP/1.1 ", status, " ", absl::string_view(reason.data(), reason.size()),
                   "\r\nServer: parley-edge\r\nCache-Control: no-store\r\n");
  if (!content_type.empty()) {
    absl::StrAppend(&head, "Content-Type: ", content_type, "\r\n");
  }
  if (status == 204) {
    // No body and no Content-Length at all (RFC 9110 section 8.6).
  } else if (content_length.has_value()) {
    absl::StrAppend(&head, "Content-Length: ", *content_length, "\r\n");
  } else {
    absl::StrAppend(&head, "Transfer-Encoding: chunked\r\n");
  }
  if (!request_.keep_alive()) {
    absl::StrAppend(&head, "Connection: close\r\n");
  }
  for (const auto& [name, value] : common_headers_) {
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  }
  for (const auto& [name, value] : headers) {
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  }
  head += "\r\n";
  return head;
}

void HttpChatExchange::Respond(unsigned status, absl::string_view content_type, std::string body,
                               HttpHeaders headers) {
  if (phase_ != Phase::kWaiting) {
    return;
  }
  status_ = status;
  phase_ = Phase::kEnding;
  const bool head_only = request_.method() == http::verb::head;
  Queue(Head(status, content_type, std::move(headers), body.size()));
  if (!head_only && !body.empty()) {
    Queue(std::move(body));
  }
  DoWrite();
}

void HttpChatExchange::StartStream(absl::string_view content_type, HttpHeaders headers) {
  if (phase_ != Phase::kWaiting) {
    return;
  }
  status_ = 200;
  phase_ = Phase::kStreaming;
  Queue(Head(200, content_type, std::move(headers), std::nullopt));
  DoWrite();
}

void HttpChatExchange::Write(std::string piece) {
  if (phase_ != Phase::kStreaming || piece.empty()) {
    return;
  }
  Queue(Chunk(piece));
  DoWrite();
}

void HttpChatExchange::EndStream() {
  if (phase_ != Phase::kStreaming) {
    return;
  }
  phase_ = Phase::kEnding;
  Queue("0\r\n\r\n");
  DoWrite();
}

void HttpChatExchange::Queue(std::string bytes) {
  queued_bytes_ += bytes.size();
  queue_.push_back(std::move(bytes));
}

void HttpChatExchange::DoWrite() {
  if (writing_ || phase_ == Phase::kClosed) {
    return;
  }
  if (queue_.empty()) {
    if (phase_ == Phase::kEnding) {
      Finish(/*reusable=*/true);
    }
    return;
  }
  writing_ = true;
  stream_.expires_after(absl::ToChronoMilliseconds(kWriteTimeout));
  net::async_write(stream_, net::buffer(queue_.front()),
                   beast::bind_front_handler(&HttpChatExchange::OnWrite, shared_from_this()));
}

void HttpChatExchange::OnWrite(beast::error_code ec, size_t /*bytes*/) {
  writing_ = false;
  queued_bytes_ -= queue_.front().size();
  queue_.pop_front();
  if (ec) {
    // The client went away: its reply still runs to the end and is stored.
    return Finish(/*reusable=*/false);
  }
  if (queued_bytes_ < kHighWaterBytes / 2) {
    ReleaseWaiters();
  }
  DoWrite();
}

void HttpChatExchange::Finish(bool reusable) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  phase_ = Phase::kClosed;
  context_.metrics.HttpRequest(path_label_, static_cast<int>(status_ == 0 ? 499 : status_))
      .Increment();
  queue_.clear();
  queued_bytes_ = 0;
  // Turns this chat started run on without it.
  if (chat_ != nullptr) {
    chat_->Close();
    chat_.reset();
  }
  ReleaseWaiters();
  std::shared_ptr<HttpChatExchange> keep = std::move(self_);
  beast::error_code ignored;
  if (reusable && request_.keep_alive()) {
    stream_.expires_never();
    return ContinueHttp(context_, HttpHandoff{std::move(stream_), std::move(buffer_), {}});
  }
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
}

void HttpChatExchange::ReleaseWaiters() {
  std::vector<std::function<void()>> waiters = std::move(waiting_for_writable_);
  waiting_for_writable_.clear();
  for (std::function<void()>& resume : waiters) {
    resume();
  }
}

}  // namespace parley::edge
