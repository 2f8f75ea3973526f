#include "tests/support/sse_client.h"

#include <array>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"

namespace parley::testing {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

absl::Status Error(absl::string_view what, const beast::error_code& ec) {
  if (ec == beast::error::timeout) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

}  // namespace

SseClient::SseClient() : stream_(io_) {
  // An event stream may be long; the parser's default body limit is for ordinary responses.
  parser_.body_limit(boost::none);
}

SseClient::~SseClient() { Drop(); }

absl::StatusOr<std::unique_ptr<SseClient>> SseClient::Open(
    const std::string& address, const std::string& target,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::Duration timeout) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got ", address));
  }
  beast::error_code ec;
  const net::ip::address ip = net::ip::make_address(address.substr(0, colon), ec);
  if (ec) {
    return Error("bad address", ec);
  }
  const net::ip::tcp::endpoint endpoint(
      ip, static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));

  std::unique_ptr<SseClient> client(new SseClient());
  http::request<http::string_body> request{http::verb::get, target, 11};
  request.set(http::field::host, address);
  request.set(http::field::accept, "text/event-stream");
  request.set(http::field::cache_control, "no-cache");
  for (const auto& [name, value] : headers) {
    request.set(name, value);
  }
  beast::error_code result;
  client->stream_.expires_after(absl::ToChronoNanoseconds(timeout));
  client->stream_.async_connect(endpoint, [&](beast::error_code ec) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_write(client->stream_, request, [&](beast::error_code ec, size_t) {
      if (ec) {
        result = ec;
        return;
      }
      http::async_read_header(client->stream_, client->buffer_, client->parser_,
                              [&](beast::error_code ec, size_t) { result = ec; });
    });
  });
  client->io_.run();
  if (result) {
    return Error("SSE request", result);
  }
  const auto& response = client->parser_.get();
  client->status_ = static_cast<int>(response.result_int());
  for (const auto& field : response) {
    client->headers_.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  client->ended_ = client->parser_.is_done();
  return client;
}

std::string SseClient::Header(const std::string& name) const {
  for (const auto& [key, value] : headers_) {
    if (absl::EqualsIgnoreCase(key, name)) {
      return value;
    }
  }
  return "";
}

absl::StatusOr<bool> SseClient::ReadMore(absl::Duration timeout) {
  if (ended_) {
    return false;
  }
  std::array<char, 4096> chunk;
  auto& body = parser_.get().body();
  body.data = chunk.data();
  body.size = chunk.size();
  beast::error_code result;
  stream_.expires_after(absl::ToChronoNanoseconds(timeout));
  http::async_read_some(stream_, buffer_, parser_,
                        [&](beast::error_code ec, size_t) { result = ec; });
  io_.restart();
  io_.run();
  // need_buffer only says the chunk is full.
  if (result && result != http::error::need_buffer) {
    return Error("SSE read", result);
  }
  pending_.append(chunk.data(), chunk.size() - body.size);
  if (parser_.is_done()) {
    ended_ = true;
  }
  return true;
}

std::optional<SseEvent> SseClient::TakeEvent() {
  for (;;) {
    const size_t end = pending_.find("\n\n");
    if (end == std::string::npos) {
      return std::nullopt;
    }
    const std::string block = pending_.substr(0, end);
    pending_.erase(0, end + 2);
    SseEvent event;
    bool has_data = false;
    for (absl::string_view line : absl::StrSplit(block, '\n')) {
      if (line.empty() || line[0] == ':') {
        continue;  // A comment.
      }
      absl::string_view field = line;
      absl::string_view value;
      const size_t colon = line.find(':');
      if (colon != absl::string_view::npos) {
        field = line.substr(0, colon);
        value = line.substr(colon + 1);
        absl::ConsumePrefix(&value, " ");
      }
      if (field == "id") {
        event.id = std::string(value);
      } else if (field == "data") {
        if (has_data) {
          event.data.push_back('\n');
        }
        event.data.append(value.data(), value.size());
        has_data = true;
      }
    }
    // EventSource dispatches only events with data.
    if (has_data) {
      return event;
    }
  }
}

absl::StatusOr<SseEvent> SseClient::Next(absl::Duration timeout) {
  for (;;) {
    if (std::optional<SseEvent> event = TakeEvent()) {
      return *event;
    }
    absl::StatusOr<bool> more = ReadMore(timeout);
    if (!more.ok()) {
      return more.status();
    }
    if (!*more) {
      return absl::OutOfRangeError("the response ended");
    }
  }
}

absl::StatusOr<std::string> SseClient::ReadBody(absl::Duration timeout) {
  for (;;) {
    absl::StatusOr<bool> more = ReadMore(timeout);
    if (!more.ok()) {
      return more.status();
    }
    if (!*more) {
      return std::exchange(pending_, "");
    }
  }
}

void SseClient::Drop() {
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

}  // namespace parley::testing
