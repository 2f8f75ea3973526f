#include "tests/support/ws_client.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gtest/gtest.h"

namespace parley::testing {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;

absl::Status Error(absl::string_view what, const beast::error_code& ec) {
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

absl::StatusOr<net::ip::tcp::endpoint> ParseAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got ", address));
  }
  beast::error_code ec;
  const net::ip::address ip = net::ip::make_address(address.substr(0, colon), ec);
  if (ec) {
    return Error("bad address", ec);
  }
  return net::ip::tcp::endpoint(ip, static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
}

}  // namespace

WsClient::WsClient() : ws_(io_) {}

WsClient::~WsClient() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

bool WsClient::RunUntil(const bool& done, absl::Duration timeout) {
  io_.restart();
  io_.run_for(absl::ToChronoNanoseconds(timeout));
  if (done) {
    return true;
  }
  beast::get_lowest_layer(ws_).cancel();
  io_.restart();
  io_.run_for(std::chrono::seconds(1));
  if (!io_.stopped()) {
    // A cancelled WebSocket operation can be left waiting on its own close handshake; closing
    // the socket ends it, so a timeout never turns into a hang.
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
    io_.restart();
    io_.run();
  }
  return false;
}

absl::StatusOr<std::unique_ptr<WsClient>> WsClient::Connect(
    const std::string& address, const std::string& target,
    const std::vector<std::string>& subprotocols,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  absl::StatusOr<net::ip::tcp::endpoint> endpoint = ParseAddress(address);
  if (!endpoint.ok()) {
    return endpoint.status();
  }
  std::unique_ptr<WsClient> client(new WsClient());
  beast::error_code ec;
  beast::get_lowest_layer(client->ws_).socket().connect(*endpoint, ec);
  if (ec) {
    return Error("connect", ec);
  }
  const std::string offered = absl::StrJoin(subprotocols, ", ");
  client->ws_.set_option(
      websocket::stream_base::decorator([offered, headers](websocket::request_type& req) {
        if (!offered.empty()) {
          req.set(http::field::sec_websocket_protocol, offered);
        }
        for (const auto& [name, value] : headers) {
          req.set(name, value);
        }
      }));
  websocket::response_type response;
  client->ws_.handshake(response, address, target, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("handshake: ", ec.message(), " (HTTP ", response.result_int(), ")"));
  }
  client->subprotocol_ = std::string(response[http::field::sec_websocket_protocol]);
  client->ws_.text(true);
  return client;
}

absl::Status WsClient::Send(const std::string& text) {
  beast::error_code ec;
  ws_.write(net::buffer(text), ec);
  return ec ? Error("write", ec) : absl::OkStatus();
}

absl::Status WsClient::SendJson(const boost::json::object& frame) {
  return Send(boost::json::serialize(frame));
}

absl::StatusOr<std::string> WsClient::Read(absl::Duration timeout) {
  bool done = false;
  beast::error_code result;
  buffer_.clear();
  ws_.async_read(buffer_, [&](beast::error_code ec, size_t) {
    result = ec;
    done = true;
  });
  if (!RunUntil(done, timeout)) {
    return absl::DeadlineExceededError("no frame before the timeout");
  }
  if (result == websocket::error::closed) {
    close_code_ = ws_.reason().code;
    return absl::FailedPreconditionError(absl::StrCat("closed with ", close_code_));
  }
  if (result) {
    return Error("read", result);
  }
  return beast::buffers_to_string(buffer_.data());
}

absl::StatusOr<boost::json::object> WsClient::ReadJson(absl::Duration timeout) {
  absl::StatusOr<std::string> text = Read(timeout);
  if (!text.ok()) {
    return text.status();
  }
  beast::error_code ec;
  boost::json::value value = boost::json::parse(*text, ec);
  if (ec || !value.is_object()) {
    return absl::DataLossError(absl::StrCat("not a JSON object: ", *text));
  }
  return std::move(value.as_object());
}

absl::Status WsClient::Close() {
  beast::error_code ec;
  ws_.close(websocket::close_code::normal, ec);
  return ec ? Error("close", ec) : absl::OkStatus();
}

std::string Str(const boost::json::object& frame, const char* key) {
  const boost::json::value* value = frame.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->get_string()) : "";
}

int64_t Int(const boost::json::object& frame, const char* key) {
  const boost::json::value* value = frame.if_contains(key);
  return value != nullptr && value->is_int64() ? value->get_int64() : -1;
}

std::optional<boost::json::object> ReadUntil(WsClient& client, const std::string& type) {
  // What was passed over, so that a failure says what came instead.
  std::string skipped;
  while (true) {
    absl::StatusOr<boost::json::object> frame = client.ReadJson();
    if (!frame.ok()) {
      ADD_FAILURE() << "no " << type << ": " << frame.status()
                    << "; before that: " << (skipped.empty() ? "nothing" : skipped);
      return std::nullopt;
    }
    if (Str(*frame, "type") == type) {
      return *std::move(frame);
    }
    if (skipped.size() < 2000) {
      absl::StrAppend(&skipped, boost::json::serialize(*frame), " ");
    }
  }
}

std::string HttpResponse::Header(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) {
      return value;
    }
  }
  return "";
}

absl::StatusOr<HttpResponse> HttpGet(const std::string& address, const std::string& target,
                                     absl::Duration timeout) {
  return HttpRequest(address, "GET", target, "", {}, timeout);
}

absl::StatusOr<HttpResponse> HttpRequest(
    const std::string& address, const std::string& method, const std::string& target,
    const std::string& body, const std::vector<std::pair<std::string, std::string>>& headers,
    absl::Duration timeout) {
  absl::StatusOr<net::ip::tcp::endpoint> endpoint = ParseAddress(address);
  if (!endpoint.ok()) {
    return endpoint.status();
  }
  net::io_context io;
  beast::tcp_stream stream(io);
  http::request<http::string_body> request;
  request.method_string(method);
  request.target(target);
  request.version(11);
  request.set(http::field::host, address);
  for (const auto& [name, value] : headers) {
    request.set(name, value);
  }
  if (!body.empty()) {
    request.body() = body;
    request.prepare_payload();
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  // A response to a HEAD request or a 204 has no body; the parser must not wait for one.
  parser.skip(method == "HEAD");
  beast::error_code result;
  stream.expires_after(absl::ToChronoNanoseconds(timeout));
  stream.async_connect(*endpoint, [&](beast::error_code ec) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_write(stream, request, [&](beast::error_code ec, size_t) {
      if (ec) {
        result = ec;
        return;
      }
      http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) { result = ec; });
    });
  });
  io.run();
  if (result) {
    return Error(absl::StrCat("HTTP ", method), result);
  }
  const http::response<http::string_body>& response = parser.get();
  HttpResponse answer;
  answer.status = static_cast<int>(response.result_int());
  answer.content_type = std::string(response[http::field::content_type]);
  answer.body = response.body();
  for (const auto& field : response) {
    answer.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  return answer;
}

}  // namespace parley::testing
