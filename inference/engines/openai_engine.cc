#include "inference/engines/openai_engine.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/ssl/host_name_verification.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/http.hpp"
#include "common/log.h"
#include "inference/engines/sse_parser.h"
#include "inference/token_count.h"

namespace parley::inference {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

constexpr size_t kReadBufferBytes = 16 * 1024;
constexpr size_t kMaxErrorBodyBytes = 64 * 1024;

std::chrono::steady_clock::duration ToChrono(absl::Duration duration) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(duration));
}

bool IsRetryableHttpStatus(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

// Seconds from a Retry-After header; HTTP-date values are treated as absent.
std::optional<absl::Duration> ParseRetryAfter(std::string_view value) {
  double seconds = 0;
  if (absl::SimpleAtod(absl::string_view(value.data(), value.size()), &seconds) && seconds >= 0) {
    return absl::Seconds(seconds);
  }
  return std::nullopt;
}

// Lets a generic lambda run on whichever stream type the connection holds.
template <typename F>
void WithStream(UpstreamConnection& connection, F&& f) {
  std::visit(std::forward<F>(f), connection.stream);
}

// One upstream request and its reply stream. Everything after construction
// runs on `strand_`; handlers keep the object alive through shared_from_this.
class OpenAiGeneration : public Generation, public std::enable_shared_from_this<OpenAiGeneration> {
 public:
  OpenAiGeneration(std::shared_ptr<const OpenAiEngine::Route> route,
                   const OpenAiEngine::Options& options,
                   std::shared_ptr<UpstreamTransport> transport, InferenceMetrics& metrics,
                   const v1::GenerateRequest& request, absl::Time deadline)
      : route_(std::move(route)),
        options_(options),
        transport_(std::move(transport)),
        metrics_(metrics),
        strand_(asio::make_strand(transport_->io())),
        deadline_timer_(strand_),
        retry_timer_(strand_),
        deadline_(deadline),
        prompt_tokens_(EstimatePromptTokens(request)) {
    request_.method(http::verb::post);
    request_.target(route_->url.Target("/v1/chat/completions"));
    request_.version(11);
    request_.set(http::field::host, route_->url.port == (route_->url.tls ? 443 : 80)
                                        ? route_->url.host
                                        : absl::StrCat(route_->url.host, ":", route_->url.port));
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::accept, "text/event-stream");
    request_.set(http::field::user_agent, "parley-inference");
    if (!route_->api_key.empty()) {
      request_.set(http::field::authorization, absl::StrCat("Bearer ", route_->api_key));
    }
    request_.keep_alive(true);
    request_.body() = BuildChatCompletionBody(request, route_->upstream_model, route_->defaults);
    request_.prepare_payload();
  }

  void Begin() {
    asio::post(strand_, [self = shared_from_this()] {
      self->metrics_.upstream_active_streams().Increment();
      if (self->deadline_ != absl::InfiniteFuture()) {
        self->deadline_timer_.expires_after(ToChrono(self->deadline_ - absl::Now()));
        self->deadline_timer_.async_wait([self](error_code error) {
          if (!error) {
            self->Stop(absl::DeadlineExceededError("deadline passed while streaming from upstream"),
                       "timeout");
          }
        });
      }
      self->Attempt();
    });
  }

  void Next(StepCallback callback) override {
    asio::post(strand_, [self = shared_from_this(), callback = std::move(callback)]() mutable {
      self->pending_ = std::move(callback);
      self->Pump();
    });
  }

  void Cancel() override {
    asio::post(strand_, [self = shared_from_this()] {
      self->Stop(absl::CancelledError("generation cancelled"), "cancelled");
    });
  }

 private:
  // --- Connecting and sending (retried before the first reply byte). ---

  void Attempt() {
    connection_ = transport_->Take(route_->url);
    if (connection_->reused) {
      SendRequest();
      return;
    }
    connection_->tcp().expires_after(ToChrono(options_.connect_timeout));
    connection_->resolver.async_resolve(
        route_->url.host, std::to_string(route_->url.port),
        asio::bind_executor(
            strand_, [self = shared_from_this()](error_code error,
                                                 asio::ip::tcp::resolver::results_type endpoints) {
              self->OnResolved(error, std::move(endpoints));
            }));
  }

  void OnResolved(error_code error, asio::ip::tcp::resolver::results_type endpoints) {
    if (stopped_) {
      return;
    }
    if (error) {
      FailBeforeReply(absl::UnavailableError(absl::StrCat("cannot resolve upstream ",
                                                          route_->url.host, ": ", error.message())),
                      "connect_error", /*retryable=*/true);
      return;
    }
    connection_->tcp().async_connect(
        endpoints,
        asio::bind_executor(
            strand_, [self = shared_from_this()](error_code error, const asio::ip::tcp::endpoint&) {
              self->OnConnected(error);
            }));
  }

  void OnConnected(error_code error) {
    if (stopped_) {
      return;
    }
    if (error) {
      const bool timeout = error == beast::error::timeout;
      FailBeforeReply(timeout ? absl::DeadlineExceededError(absl::StrCat(
                                    "connecting to upstream ", route_->url.Origin(), " timed out"))
                              : absl::UnavailableError(absl::StrCat("cannot connect to upstream ",
                                                                    route_->url.Origin(), ": ",
                                                                    error.message())),
                      "connect_error", /*retryable=*/true);
      return;
    }
    auto* tls = std::get_if<UpstreamConnection::TlsStream>(&connection_->stream);
    if (tls == nullptr) {
      SendRequest();
      return;
    }
    // SNI must be a host name, never an IP literal.
    error_code not_an_address;
    asio::ip::make_address(route_->url.host, not_an_address);
    if (not_an_address) {
      SSL_set_tlsext_host_name(tls->native_handle(), route_->url.host.c_str());
    }
    tls->set_verify_callback(asio::ssl::host_name_verification(route_->url.host));
    tls->async_handshake(
        asio::ssl::stream_base::client,
        asio::bind_executor(
            strand_, [self = shared_from_this()](error_code error) { self->OnHandshake(error); }));
  }

  void OnHandshake(error_code error) {
    if (stopped_) {
      return;
    }
    if (error) {
      FailBeforeReply(
          absl::UnavailableError(absl::StrCat("TLS handshake with upstream ", route_->url.Origin(),
                                              " failed: ", error.message())),
          "connect_error", /*retryable=*/false);
      return;
    }
    SendRequest();
  }

  void SendRequest() {
    connection_->tcp().expires_after(ToChrono(options_.max_silence));
    sent_at_ = absl::Now();
    WithStream(*connection_, [this](auto& stream) {
      http::async_write(
          stream, request_,
          asio::bind_executor(strand_, [self = shared_from_this()](error_code error, size_t) {
            self->OnRequestSent(error);
          }));
    });
  }

  void OnRequestSent(error_code error) {
    if (stopped_) {
      return;
    }
    if (error) {
      FailWhileWaiting(error);
      return;
    }
    parser_.emplace();
    parser_->body_limit(boost::none);
    WithStream(*connection_, [this](auto& stream) {
      http::async_read_header(
          stream, connection_->buffer, *parser_,
          asio::bind_executor(strand_, [self = shared_from_this()](error_code error, size_t) {
            self->OnResponseHead(error);
          }));
    });
  }

  // The request is out but no response head came.
  void FailWhileWaiting(error_code error) {
    if (connection_->reused && error != beast::error::timeout && !stale_retry_used_) {
      // A pooled connection the server closed while idle: try once more on a fresh one.
      stale_retry_used_ = true;
      connection_->Close();
      Attempt();
      return;
    }
    if (error == beast::error::timeout) {
      FailBeforeReply(
          absl::DeadlineExceededError(absl::StrCat("upstream sent no response within ",
                                                   absl::FormatDuration(options_.max_silence))),
          "timeout", /*retryable=*/false);
      return;
    }
    FailBeforeReply(
        absl::UnavailableError(absl::StrCat("upstream connection failed: ", error.message())),
        "connect_error", /*retryable=*/true);
  }

  void OnResponseHead(error_code error) {
    if (stopped_) {
      return;
    }
    if (error) {
      FailWhileWaiting(error);
      return;
    }
    http_status_ = parser_->get().result_int();
    if (http_status_ == 200) {
      accepted_ = true;
      Pump();
      return;
    }
    if (auto it = parser_->get().find(http::field::retry_after); it != parser_->get().end()) {
      retry_after_ = ParseRetryAfter(std::string_view(it->value().data(), it->value().size()));
    }
    ReadBody();
  }

  // Called from a completion handler, so no operation still uses the connection.
  void FailBeforeReply(absl::Status status, const std::string& outcome, bool retryable) {
    if (connection_) {
      connection_->Close();
      connection_.reset();
    }
    const int retries_left = options_.max_retries - retries_;
    absl::Duration wait = options_.retry_backoff * (1 << std::min(retries_, 10));
    if (retry_after_) {
      wait = std::max(wait, *retry_after_);
    }
    retry_after_.reset();
    if (!retryable || retries_left <= 0 || wait > options_.max_retry_wait ||
        absl::Now() + wait >= deadline_) {
      metrics_.UpstreamRequests(route_->public_name, outcome).Increment();
      End(std::move(status));
      return;
    }
    ++retries_;
    stale_retry_used_ = false;
    metrics_.UpstreamRetries(route_->public_name).Increment();
    retry_timer_.expires_after(ToChrono(wait));
    retry_timer_.async_wait([self = shared_from_this()](error_code error) {
      if (!error && !self->stopped_) {
        self->Attempt();
      }
    });
  }

  // --- Reading the reply. ---

  // Reads some body bytes: only while the client waits for a chunk and none is
  // queued, so a slow gRPC reader leaves the bytes in the upstream socket.
  void ReadBody() {
    reading_ = true;
    connection_->tcp().expires_after(ToChrono(options_.max_silence));
    parser_->get().body().data = read_buffer_;
    parser_->get().body().size = kReadBufferBytes;
    WithStream(*connection_, [this](auto& stream) {
      http::async_read_some(
          stream, connection_->buffer, *parser_,
          asio::bind_executor(strand_, [self = shared_from_this()](error_code error, size_t) {
            self->OnBodyRead(error);
          }));
    });
  }

  void OnBodyRead(error_code error) {
    reading_ = false;
    if (stopped_) {
      return;
    }
    if (error == http::error::need_buffer) {
      error = {};
    }
    const size_t bytes = kReadBufferBytes - parser_->get().body().size;
    const std::string_view data(read_buffer_, bytes);
    if (http_status_ != 200) {
      OnErrorBody(data, error);
      return;
    }
    received_bytes_ += bytes;
    if (absl::Status status = OnStreamBytes(data); !status.ok()) {
      Stop(std::move(status), "protocol_error");
      return;
    }
    if (done_) {
      Finish();
      return;
    }
    if (error || parser_->is_done()) {
      if (error == beast::error::timeout) {
        Stop(absl::DeadlineExceededError(absl::StrCat("upstream was silent for ",
                                                      absl::FormatDuration(options_.max_silence),
                                                      " after ", Received())),
             "timeout");
      } else {
        Stop(absl::UnavailableError(
                 absl::StrCat("upstream closed the stream before [DONE] after ", Received())),
             "closed_early");
      }
      return;
    }
    Pump();
  }

  void OnErrorBody(std::string_view data, error_code error) {
    if (error_body_.size() < kMaxErrorBodyBytes) {
      error_body_.append(data.substr(0, kMaxErrorBodyBytes - error_body_.size()));
    }
    if (!error && !parser_->is_done() && error_body_.size() < kMaxErrorBodyBytes) {
      ReadBody();
      return;
    }
    if (!error && parser_->is_done() && parser_->keep_alive()) {
      transport_->Put(route_->url, std::move(connection_));
    }
    const int status = http_status_;
    http_status_ = 0;
    FailBeforeReply(StatusFromHttpError(status, error_body_), absl::StrCat("http_", status),
                    IsRetryableHttpStatus(status));
    error_body_.clear();
  }

  absl::Status OnStreamBytes(std::string_view data) {
    events_.clear();
    if (absl::Status status = sse_.Feed(data, events_); !status.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat(status.message(), " from upstream after ", Received()));
    }
    for (const SseEvent& event : events_) {
      const absl::Time now = absl::Now();
      if (events_seen_++ > 0) {
        metrics_.UpstreamInterChunkGap(route_->public_name)
            .Observe(absl::ToDoubleSeconds(now - last_event_at_));
      }
      last_event_at_ = now;
      StreamEvent parsed;
      if (absl::Status status = ParseStreamEvent(event.data, parsed); !status.ok()) {
        return absl::Status(status.code(), absl::StrCat(status.message(), " after ", Received()));
      }
      for (v1::GenerateResponse& delta : parsed.deltas) {
        if (text_deltas_ + reasoning_deltas_ == 0) {
          metrics_.UpstreamTimeToFirstToken(route_->public_name)
              .Observe(absl::ToDoubleSeconds(now - sent_at_));
        }
        (delta.has_text_delta() ? text_deltas_ : reasoning_deltas_)++;
        queue_.push_back(std::move(delta));
      }
      if (parsed.finish) {
        finish_ = *parsed.finish;
      }
      if (parsed.usage) {
        upstream_usage_ = *parsed.usage;
      }
      if (parsed.done) {
        done_ = true;
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  std::string Received() const {
    return absl::StrCat(text_deltas_, " text and ", reasoning_deltas_, " reasoning deltas (",
                        received_bytes_, " bytes)");
  }

  v1::GenerateResponse UsageChunk() const {
    v1::GenerateResponse chunk;
    v1::Usage* usage = chunk.mutable_usage();
    if (upstream_usage_) {
      *usage = *upstream_usage_;
    } else {
      usage->set_prompt_tokens(prompt_tokens_);
      usage->set_completion_tokens(static_cast<int>(text_deltas_ + reasoning_deltas_));
      usage->set_reasoning_tokens(static_cast<int>(reasoning_deltas_));
      usage->set_estimated(true);
    }
    return chunk;
  }

  // `[DONE]` arrived: usage and finish go out now; the stream ends once the
  // HTTP message is read to its end, so the connection can serve the next
  // request (the terminating chunk normally follows [DONE] at once).
  void Finish() {
    queue_.push_back(UsageChunk());
    v1::GenerateResponse finish;
    finish.mutable_finish()->set_reason(finish_.value_or(v1::FINISH_REASON_STOP));
    queue_.push_back(std::move(finish));
    metrics_.UpstreamRequests(route_->public_name, "ok").Increment();
    Pump();
    DrainForReuse();
  }

  void DrainForReuse() {
    if (parser_->is_done()) {
      if (parser_->keep_alive()) {
        transport_->Put(route_->url, std::move(connection_));
      }
      connection_.reset();
      End(absl::OkStatus());
      return;
    }
    reading_ = true;
    parser_->get().body().data = read_buffer_;
    parser_->get().body().size = kReadBufferBytes;
    // A server that keeps the stream open after [DONE] costs a connection, not a wait.
    connection_->tcp().expires_after(ToChrono(std::min(options_.max_silence, absl::Seconds(1))));
    WithStream(*connection_, [this](auto& stream) {
      http::async_read_some(
          stream, connection_->buffer, *parser_,
          asio::bind_executor(strand_, [self = shared_from_this()](error_code error, size_t) {
            self->reading_ = false;
            if (self->stopped_) {
              return;
            }
            if (error && error != http::error::need_buffer) {
              self->connection_->Close();
              self->End(absl::OkStatus());
              return;
            }
            self->DrainForReuse();
          }));
    });
  }

  // --- Ending. ---

  // Ends the stream early: closes the connection (the upstream sees it at once)
  // and reports usage if the upstream had started a reply.
  void Stop(absl::Status status, const std::string& outcome) {
    const bool cancel = status.code() == absl::StatusCode::kCancelled;
    if (connection_) {
      // Only closed here: a pending operation may still use it until its handler runs.
      connection_->Close();
    }
    if (stopped_) {
      // Already ended (e.g. [DONE] came) but the client has not read the end yet.
      if (cancel && !end_delivered_) {
        cancelled_ = true;
        queue_.clear();
        final_status_ = std::move(status);
      }
      Pump();
      return;
    }
    if (cancel) {
      cancelled_ = true;
      queue_.clear();  // Nobody reads them any more.
    }
    if (done_) {
      End(std::move(status));  // Cancelled while draining after [DONE]: counted as ok already.
      return;
    }
    metrics_.UpstreamRequests(route_->public_name, outcome).Increment();
    if (accepted_ && !cancel) {
      queue_.push_back(UsageChunk());
    }
    if (accepted_ && cancel) {
      // The client cannot receive a usage chunk any more; the log keeps the count.
      const v1::GenerateResponse usage = UsageChunk();
      common::LogInfo("upstream stream cancelled",
                      {{"model", route_->public_name},
                       {"completion_tokens", std::to_string(usage.usage().completion_tokens())},
                       {"estimated", usage.usage().estimated() ? "true" : "false"}});
    }
    End(std::move(status));
  }

  void End(absl::Status status) {
    stopped_ = true;
    final_status_ = std::move(status);
    metrics_.upstream_active_streams().Decrement();
    deadline_timer_.cancel();
    retry_timer_.cancel();
    Pump();
  }

  // Hands the next step to a waiting client, or reads more when there is none.
  void Pump() {
    if (!pending_) {
      return;
    }
    if (!queue_.empty()) {
      Deliver(Step::Chunk(std::move(queue_.front())));
      queue_.pop_front();
      return;
    }
    if (stopped_) {
      if (!end_delivered_) {
        end_delivered_ = true;
        Deliver(Step::End(final_status_));
      } else {
        Deliver(Step::End(absl::FailedPreconditionError("generation already ended")));
      }
      return;
    }
    if (accepted_ && !reading_ && !done_) {
      ReadBody();
    }
  }

  void Deliver(Step step) {
    StepCallback callback = std::move(pending_);
    pending_ = nullptr;
    callback(std::move(step));
  }

  const std::shared_ptr<const OpenAiEngine::Route> route_;
  const OpenAiEngine::Options options_;
  const std::shared_ptr<UpstreamTransport> transport_;
  InferenceMetrics& metrics_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer deadline_timer_;
  asio::steady_timer retry_timer_;
  const absl::Time deadline_;
  const int prompt_tokens_;
  http::request<http::string_body> request_;

  std::unique_ptr<UpstreamConnection> connection_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  char read_buffer_[kReadBufferBytes];
  SseParser sse_;
  std::vector<SseEvent> events_;
  std::deque<v1::GenerateResponse> queue_;
  StepCallback pending_;

  int retries_ = 0;
  bool stale_retry_used_ = false;
  std::optional<absl::Duration> retry_after_;
  int http_status_ = 0;
  std::string error_body_;
  bool accepted_ = false;  // A 200 head arrived; from here on nothing is retried.
  bool reading_ = false;
  bool done_ = false;  // [DONE] seen.
  bool stopped_ = false;
  bool cancelled_ = false;
  bool end_delivered_ = false;
  absl::Status final_status_;

  absl::Time sent_at_;
  absl::Time last_event_at_;
  int64_t events_seen_ = 0;
  int64_t received_bytes_ = 0;
  int64_t text_deltas_ = 0;
  int64_t reasoning_deltas_ = 0;
  std::optional<v1::FinishReason> finish_;
  std::optional<v1::Usage> upstream_usage_;
};

}  // namespace

OpenAiEngine::OpenAiEngine(Route route, Options options,
                           std::shared_ptr<UpstreamTransport> transport, InferenceMetrics* metrics)
    : route_(std::make_shared<const Route>(std::move(route))),
      options_(options),
      transport_(std::move(transport)),
      metrics_(metrics) {}

std::shared_ptr<Generation> OpenAiEngine::Start(const v1::GenerateRequest& request,
                                                absl::Time deadline) {
  auto generation = std::make_shared<OpenAiGeneration>(route_, options_, transport_, *metrics_,
                                                       request, deadline);
  generation->Begin();
  return generation;
}

}  // namespace parley::inference
