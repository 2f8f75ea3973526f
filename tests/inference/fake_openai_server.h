#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl/context.hpp"

namespace parley::inference::testing {

// What the fake server writes for one request: raw bytes, so a test controls
// every byte and every write boundary (status line and headers included).
struct FakeReply {
  std::vector<std::string> writes;      // Each one write on the socket.
  absl::Duration pause_between_writes;  // Lets the client read each write separately.
  // Before the write with this index, the reply waits until the test calls Continue(): it stops
  // mid-stream for exactly as long as the test needs.
  std::optional<size_t> wait_before_write;
  enum class Then {
    kKeepAlive,  // Read the next request on the same connection.
    kClose,      // Close the connection.
    kHold,       // Write nothing more; wait until the client goes away.
  } then = Then::kKeepAlive;
};

// A 200 text/event-stream reply with `body` sent in chunked encoding, one
// chunk (and one write) per piece.
FakeReply SseReply(const std::vector<std::string>& pieces, bool finish_message = true);
FakeReply SseReply(const std::string& body);
// `body` cut into pieces of `size` bytes.
std::vector<std::string> SplitEvery(const std::string& body, size_t size);
// A complete non-streaming reply, e.g. JsonReply(429, "{…}", "Retry-After: 1\r\n").
FakeReply JsonReply(int status, const std::string& body, const std::string& extra_headers = "");
// Reads the request and then never answers.
FakeReply SilentReply();

// A fake OpenAI-compatible HTTP/1.1 server on a free loopback port, plain or
// TLS, for tests. Replies are taken from a queue in order; when the queue is
// empty it answers 500. One thread per connection; it records every request
// and when a client went away.
class FakeOpenAiServer {
 public:
  struct TlsFiles {
    std::string cert_file;
    std::string key_file;
  };

  explicit FakeOpenAiServer(std::optional<TlsFiles> tls = std::nullopt);
  ~FakeOpenAiServer();

  int port() const { return port_; }
  // "http://127.0.0.1:PORT", or "https://localhost:PORT" with TLS.
  std::string url() const;

  void Enqueue(FakeReply reply);

  // Lets one reply waiting at its `wait_before_write` go on (or the next one to get there).
  void Continue();

  struct Request {
    std::string target;
    std::string authorization;
    std::string body;
  };
  std::vector<Request> requests();
  int connections();

  // When the server saw a client close a connection it was holding or
  // waiting on; nullopt if that did not happen within `timeout`.
  std::optional<std::chrono::steady_clock::time_point> WaitForDisconnect(
      absl::Duration timeout = absl::Seconds(30));

 private:
  void AcceptLoop();
  template <typename Stream>
  void Serve(Stream& stream);
  void RecordDisconnect();

  boost::asio::io_context io_;
  std::optional<boost::asio::ssl::context> tls_;
  boost::asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::thread accept_thread_;

  absl::Mutex mutex_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::deque<FakeReply> replies_ ABSL_GUARDED_BY(mutex_);
  int continues_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mutex_);
  std::vector<int> sockets_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mutex_);
  std::optional<std::chrono::steady_clock::time_point> disconnected_at_ ABSL_GUARDED_BY(mutex_);
};

// Writes a self-signed certificate (CN=localhost, the given SANs) and its key
// into a fresh directory, with the openssl tool.
FakeOpenAiServer::TlsFiles MakeTestCertificate(
    const std::string& subject_alt_names = "DNS:localhost,IP:127.0.0.1");

}  // namespace parley::inference::testing
