#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "common/trace_context.h"
#include "edge/protocol/dialect_session.h"
#include "edge/server/http_session.h"
#include "edge/turn/event_sink.h"

namespace parley::edge {

class ChatConnection;
struct ServerContext;

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// How a reply goes out on an HTTP exchange: one whole response, or a response head followed by
// streamed pieces (chunked transfer encoding, e.g. Server-Sent Events).
class ExchangeWriter {
 public:
  virtual ~ExchangeWriter() = default;

  // A complete response; ends the exchange.
  virtual void Respond(unsigned status, absl::string_view content_type, std::string body,
                       HttpHeaders headers = {}) = 0;
  // Sends a 200 head for a body that follows in pieces.
  virtual void StartStream(absl::string_view content_type, HttpHeaders headers = {}) = 0;
  // One piece of a started stream.
  virtual void Write(std::string piece) = 0;
  // Ends a started stream after what is queued.
  virtual void EndStream() = 0;
  // StartStream was called (a status can no longer be chosen).
  virtual bool streaming() const = 0;
};

// What one HTTP API makes of a chat's events: it answers them through the writer, and ends the
// exchange (Respond or EndStream) once the reply it waits for ended.
class ExchangeResponder {
 public:
  virtual ~ExchangeResponder() = default;
  virtual void OnEvent(const Event& event, ExchangeWriter& out) = 0;
};

// One HTTP request answered by a chat: the request's commands run on a ChatConnection (turns,
// limits, storage and metrics as for any client) and its events go to an ExchangeResponder,
// which writes them as one response or as a stream. The head is written only when the responder
// decides, so failures before the reply starts keep their own HTTP status. Lives on the
// connection's strand and keeps itself alive until the response is written; one write is in
// flight, with a bounded queue behind it that holds the turn back while the client does not keep
// up. A client that goes away cancels nothing: the chat is dropped and its turns run on and are
// stored. After a complete response on a keep-alive connection, the connection reads its next
// request (ContinueHttp).
class HttpChatExchange final : public EventSink,
                               public ExchangeWriter,
                               public std::enable_shared_from_this<HttpChatExchange> {
 public:
  // Bytes queued past which the turn stops pulling tokens.
  static constexpr size_t kHighWaterBytes = 256 * 1024;

  HttpChatExchange(ServerContext& context, HttpHandoff handoff,
                   std::unique_ptr<ExchangeResponder> responder, std::string path_label,
                   HttpHeaders common_headers = {});
  ~HttpChatExchange() override;

  // Opens the chat for `user` and hands it `command`. On the connection's strand.
  void Start(ChatUser user, ChatOptions options, Command command, common::TraceContext trace);
  // Answers without a chat (a request refused before it reaches one).
  void RespondNow(unsigned status, absl::string_view content_type, std::string body,
                  HttpHeaders headers = {});

  boost::asio::any_io_executor executor() { return stream_.get_executor(); }
  const boost::beast::http::request<boost::beast::http::string_body>& request() const {
    return request_;
  }

  // EventSink
  void Emit(Event event, std::optional<Clock::time_point> arrival) override;
  bool Writable() const override;
  void WhenWritable(std::function<void()> resume) override;

  // ExchangeWriter
  void Respond(unsigned status, absl::string_view content_type, std::string body,
               HttpHeaders headers = {}) override;
  void StartStream(absl::string_view content_type, HttpHeaders headers = {}) override;
  void Write(std::string piece) override;
  void EndStream() override;
  bool streaming() const override { return phase_ == Phase::kStreaming; }

 private:
  enum class Phase {
    kWaiting,    // Nothing written yet.
    kStreaming,  // The head went out; pieces follow.
    kEnding,     // The last bytes are queued.
    kClosed,     // Written or failed.
  };

  std::string Head(unsigned status, absl::string_view content_type, HttpHeaders headers,
                   std::optional<size_t> content_length) const;
  void Queue(std::string bytes);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void Finish(bool reusable);
  void ReleaseWaiters();

  ServerContext& context_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  const boost::beast::http::request<boost::beast::http::string_body> request_;
  const std::unique_ptr<ExchangeResponder> responder_;
  const std::string path_label_;
  const HttpHeaders common_headers_;
  std::shared_ptr<ChatConnection> chat_;
  // Held while the response is not yet written: nothing else owns an exchange waiting for events.
  std::shared_ptr<HttpChatExchange> self_;
  Phase phase_ = Phase::kWaiting;
  unsigned status_ = 0;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  std::vector<std::function<void()>> waiting_for_writable_;
};

}  // namespace parley::edge
