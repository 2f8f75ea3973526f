#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/buffer_body.hpp"
#include "boost/beast/http/parser.hpp"

namespace parley::testing {

// One Server-Sent Event as an EventSource dispatches it.
struct SseEvent {
  std::string id;  // The `id:` field of this event; "" when it had none.
  std::string data;
};

// A small synchronous Server-Sent Events client for tests, reading the way EventSource does: a
// GET with `Accept: text/event-stream`, then events as they arrive, one at a time, until the
// server ends the response or the test drops the connection. Every call returns a status
// instead of throwing.
class SseClient {
 public:
  // Sends GET `target` to `address` ("127.0.0.1:PORT") and reads the response head.
  static absl::StatusOr<std::unique_ptr<SseClient>> Open(
      const std::string& address, const std::string& target,
      const std::vector<std::pair<std::string, std::string>>& headers = {},
      absl::Duration timeout = absl::Seconds(30));

  ~SseClient();

  int status() const { return status_; }
  // The first response header called `name` (case-insensitive); "" when absent.
  std::string Header(const std::string& name) const;

  // The next event. OutOfRange once the response has ended (the events before it were all
  // returned); DeadlineExceeded if nothing completes an event within `timeout`.
  absl::StatusOr<SseEvent> Next(absl::Duration timeout = absl::Seconds(30));

  // The rest of the body as it is, for a response that is not an event stream.
  absl::StatusOr<std::string> ReadBody(absl::Duration timeout = absl::Seconds(30));

  // Closes the connection in the middle of the response, as a dropped network would.
  void Drop();

 private:
  SseClient();

  // Reads more of the body into `pending_`; false at its end.
  absl::StatusOr<bool> ReadMore(absl::Duration timeout);
  // Takes one complete event off `pending_`, if there is one.
  std::optional<SseEvent> TakeEvent();

  boost::asio::io_context io_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  boost::beast::http::response_parser<boost::beast::http::buffer_body> parser_;
  int status_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string pending_;
  bool ended_ = false;
};

}  // namespace parley::testing
