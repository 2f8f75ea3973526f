#include "tests/inference/fake_openai_server.h"

#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "boost/asio/ssl/stream.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "tests/support/child_process.h"

namespace parley::inference::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

std::string ChunkOf(const std::string& piece) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
  return absl::StrCat(size, piece, "\r\n");
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

FakeReply SseReply(const std::vector<std::string>& pieces, bool finish_message) {
  FakeReply reply;
  reply.writes.push_back(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
      "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
  for (const std::string& piece : pieces) {
    reply.writes.push_back(ChunkOf(piece));
  }
  if (finish_message) {
    reply.writes.push_back("0\r\n\r\n");
  }
  return reply;
}

FakeReply SseReply(const std::string& body) { return SseReply(std::vector<std::string>{body}); }

std::vector<std::string> SplitEvery(const std::string& body, size_t size) {
  std::vector<std::string> pieces;
  for (size_t i = 0; i < body.size(); i += size) {
    pieces.push_back(body.substr(i, size));
  }
  return pieces;
}

FakeReply JsonReply(int status, const std::string& body, const std::string& extra_headers) {
  FakeReply reply;
  reply.writes.push_back(absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                                      "\r\nContent-Type: application/json\r\nContent-Length: ",
                                      body.size(), "\r\n", extra_headers, "\r\n", body));
  return reply;
}

FakeReply SilentReply() {
  FakeReply reply;
  reply.then = FakeReply::Then::kHold;
  return reply;
}

FakeOpenAiServer::FakeOpenAiServer(std::optional<TlsFiles> tls)
    : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  if (tls) {
    tls_.emplace(asio::ssl::context::tls_server);
    tls_->use_certificate_chain_file(tls->cert_file);
    tls_->use_private_key_file(tls->key_file, asio::ssl::context::pem);
  }
  port_ = acceptor_.local_endpoint().port();
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeOpenAiServer::~FakeOpenAiServer() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    // shutdown() wakes threads blocked in accept() or recv() on these sockets.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    for (int socket : sockets_) {
      ::shutdown(socket, SHUT_RDWR);
    }
  }
  accept_thread_.join();
  {
    absl::MutexLock lock(&mutex_);
    threads.swap(threads_);
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
}

std::string FakeOpenAiServer::url() const {
  return tls_ ? absl::StrCat("https://localhost:", port_)
              : absl::StrCat("http://127.0.0.1:", port_);
}

void FakeOpenAiServer::Enqueue(FakeReply reply) {
  absl::MutexLock lock(&mutex_);
  replies_.push_back(std::move(reply));
}

void FakeOpenAiServer::Continue() {
  absl::MutexLock lock(&mutex_);
  ++continues_;
}

std::vector<FakeOpenAiServer::Request> FakeOpenAiServer::requests() {
  absl::MutexLock lock(&mutex_);
  return requests_;
}

int FakeOpenAiServer::connections() {
  absl::MutexLock lock(&mutex_);
  return static_cast<int>(sockets_.size());
}

std::optional<std::chrono::steady_clock::time_point> FakeOpenAiServer::WaitForDisconnect(
    absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  auto seen = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return disconnected_at_.has_value(); };
  mutex_.AwaitWithTimeout(absl::Condition(&seen), timeout);
  return disconnected_at_;
}

void FakeOpenAiServer::RecordDisconnect() {
  const auto now = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mutex_);
  if (!disconnected_at_ && !stopping_) {
    disconnected_at_ = now;
  }
}

void FakeOpenAiServer::AcceptLoop() {
  for (;;) {
    boost::system::error_code error;
    tcp::socket socket(io_);
    acceptor_.accept(socket, error);
    absl::MutexLock lock(&mutex_);
    if (error || stopping_) {
      return;
    }
    socket.set_option(tcp::no_delay(true), error);
    sockets_.push_back(socket.native_handle());
    threads_.emplace_back([this, socket = std::move(socket)]() mutable {
      if (!tls_) {
        Serve(socket);
        return;
      }
      asio::ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
      boost::system::error_code error;
      stream.handshake(asio::ssl::stream_base::server, error);
      if (!error) {
        Serve(stream);
      }
    });
  }
}

template <typename Stream>
void FakeOpenAiServer::Serve(Stream& stream) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> request;
    boost::system::error_code error;
    http::read(stream, buffer, request, error);
    if (error) {
      return;
    }
    FakeReply reply;
    {
      absl::MutexLock lock(&mutex_);
      requests_.push_back(Request{std::string(request.target()),
                                  std::string(request[http::field::authorization]),
                                  request.body()});
      if (replies_.empty()) {
        reply = JsonReply(500, R"({"error":{"message":"no reply queued"}})");
      } else {
        reply = std::move(replies_.front());
        replies_.pop_front();
      }
    }
    for (size_t i = 0; i < reply.writes.size(); ++i) {
      if (reply.wait_before_write == i) {
        absl::MutexLock lock(&mutex_);
        auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
          return continues_ > 0 || stopping_;
        };
        mutex_.Await(absl::Condition(&released));
        if (stopping_) {
          return;
        }
        --continues_;
      }
      if (i > 0 && reply.pause_between_writes > absl::ZeroDuration()) {
        absl::SleepFor(reply.pause_between_writes);
      }
      asio::write(stream, asio::buffer(reply.writes[i]), error);
      if (error) {
        RecordDisconnect();
        return;
      }
    }
    switch (reply.then) {
      case FakeReply::Then::kKeepAlive:
        continue;
      case FakeReply::Then::kClose:
        beast::get_lowest_layer(stream).shutdown(tcp::socket::shutdown_both, error);
        return;
      case FakeReply::Then::kHold: {
        // Blocks until the client closes (or the server stops).
        char byte;
        stream.read_some(asio::buffer(&byte, 1), error);
        RecordDisconnect();
        return;
      }
    }
  }
}

FakeOpenAiServer::TlsFiles MakeTestCertificate(const std::string& subject_alt_names) {
  const std::string dir = parley::testing::MakeTempDir();
  FakeOpenAiServer::TlsFiles files{dir + "/cert.pem", dir + "/key.pem"};
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
      "-addext subjectAltName=",
      subject_alt_names, " -keyout ", files.key_file, " -out ", files.cert_file,
      " >/dev/null 2>&1");
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "cannot generate a test certificate with openssl\n");
  }
  return files;
}

}  // namespace parley::inference::testing
