#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "boost/json/object.hpp"

namespace parley::testing {

// A small synchronous WebSocket client for tests: connect, send a text frame,
// read the next frame with a timeout. Every call returns a status instead of
// throwing, so a test failure reads as one.
class WsClient {
 public:
  // Connects to ws://`address``target` ("127.0.0.1:PORT", "/ws/chat?userId=u").
  // `subprotocols` are offered in Sec-WebSocket-Protocol; `headers` go on the upgrade request.
  static absl::StatusOr<std::unique_ptr<WsClient>> Connect(
      const std::string& address, const std::string& target = "/ws/chat",
      const std::vector<std::string>& subprotocols = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {});

  ~WsClient();

  absl::Status Send(const std::string& text);
  absl::Status SendJson(const boost::json::object& frame);

  // The next text frame. DeadlineExceeded if none arrives within `timeout`;
  // FailedPrecondition with the close code if the server closed.
  absl::StatusOr<std::string> Read(absl::Duration timeout = absl::Seconds(30));
  absl::StatusOr<boost::json::object> ReadJson(absl::Duration timeout = absl::Seconds(30));

  // Sends a close frame and waits for the server's.
  absl::Status Close();

  // The subprotocol the server accepted ("" if none).
  const std::string& subprotocol() const { return subprotocol_; }
  // The close code the server sent, once Read() reported the close; 0 before.
  int close_code() const { return close_code_; }

 private:
  WsClient();

  // Runs the io_context until `done` or the timeout; cancels on timeout.
  bool RunUntil(const bool& done, absl::Duration timeout);

  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  std::string subprotocol_;
  int close_code_ = 0;
};

// A field of a JSON frame; "" or -1 when it is absent or of another type.
std::string Str(const boost::json::object& frame, const char* key);
int64_t Int(const boost::json::object& frame, const char* key);

// Reads frames until one of `type` and returns it; on a timeout or a close first, records a test
// failure and returns nullopt.
std::optional<boost::json::object> ReadUntil(WsClient& client, const std::string& type);

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  // Every response header as sent, in order.
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header called `name` (case-insensitive); "" when absent.
  std::string Header(const std::string& name) const;
};

// A blocking HTTP/1.1 GET against `address` ("127.0.0.1:PORT").
absl::StatusOr<HttpResponse> HttpGet(const std::string& address, const std::string& target,
                                     absl::Duration timeout = absl::Seconds(30));

// A blocking HTTP/1.1 request: `method` ("GET", "PATCH", "OPTIONS", ...) on `target`, with `body`
// (sent with Content-Length when non-empty) and extra request `headers`.
absl::StatusOr<HttpResponse> HttpRequest(
    const std::string& address, const std::string& method, const std::string& target,
    const std::string& body = "",
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    absl::Duration timeout = absl::Seconds(30));

}  // namespace parley::testing
