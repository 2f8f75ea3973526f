#include "tools/parley-bench/load_client.h"

#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/json.hpp"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace parley::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// A reply's seqs beyond this are treated as a protocol error rather than
// letting a broken server make the client allocate without bound.
constexpr int64_t kMaxSeq = 1 << 20;

// Counts down from N and notifies once it reaches zero.
class Countdown {
 public:
  void Reset(int64_t n) {
    remaining_.store(n);
    notification_ = std::make_unique<absl::Notification>();
    if (n == 0) {
      notification_->Notify();
    }
  }
  void Done() {
    if (remaining_.fetch_sub(1) == 1) {
      notification_->Notify();
    }
  }
  bool Wait(absl::Duration timeout) {
    return notification_->WaitForNotificationWithTimeout(timeout);
  }

 private:
  std::atomic<int64_t> remaining_{0};
  std::unique_ptr<absl::Notification> notification_;
};

}  // namespace

class Connection;

class LoadClient::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {
    for (int i = 0; i < std::max(1, options_.threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
  }
  ~Impl();

  void Connect();
  void RunTurns();
  int64_t PingAll(absl::Duration timeout);
  void CloseAll(absl::Duration timeout);
  ClientReport Report();

  // Called by connections.
  void ConnectSettled(const std::shared_ptr<Connection>& connection, bool ok);
  void TurnsFinished() { turns_done_.Done(); }
  void PingDone(bool ponged) {
    if (ponged) {
      counters_.pongs.fetch_add(1);
    }
    pinged_.Done();
  }
  void Closed() { closed_.Done(); }
  void RecordTurn(double ttft_ms, double e2e_ms, int64_t tokens, const std::vector<float>& gaps,
                  Clock::time_point sent_at, Clock::time_point done_at);
  bool Accepting(Clock::time_point now) const {
    return deadline_ == Clock::time_point() || now < deadline_;
  }

  struct Counters {
    std::atomic<int64_t> connect_failures{0}, disconnects{0}, turns_started{0}, turns_completed{0},
        turns_failed{0}, turn_timeouts{0}, error_frames{0}, protocol_errors{0}, tokens{0},
        frames{0}, lost{0}, repeated{0}, out_of_order{0}, last_seq_mismatches{0},
        faulty_messages{0}, pongs{0};
  };

  const ClientOptions options_;
  asio::io_context ioc_;
  Counters counters_;
  Clock::time_point turns_start_;
  Clock::time_point deadline_;

 private:
  void LaunchNext();
  std::vector<std::shared_ptr<Connection>> Established();

  asio::executor_work_guard<asio::io_context::executor_type> guard_{ioc_.get_executor()};
  std::vector<std::thread> threads_;
  std::atomic<int64_t> next_index_{0};
  Countdown connects_;
  Countdown turns_done_;
  Countdown pinged_;
  Countdown closed_;
  absl::Mutex connections_mutex_;
  std::vector<std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(connections_mutex_);

  absl::Mutex samples_mutex_;
  std::vector<double> ttft_ ABSL_GUARDED_BY(samples_mutex_);
  std::vector<double> itl_ ABSL_GUARDED_BY(samples_mutex_);
  std::vector<double> tpot_ ABSL_GUARDED_BY(samples_mutex_);
  std::vector<double> e2e_ ABSL_GUARDED_BY(samples_mutex_);
  Clock::time_point first_send_ ABSL_GUARDED_BY(samples_mutex_) = Clock::time_point::max();
  Clock::time_point last_done_ ABSL_GUARDED_BY(samples_mutex_) = Clock::time_point::min();
};

// One client socket. All of its handlers run on its own strand.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(LoadClient::Impl& run, int64_t index)
      : run_(run), index_(index), ws_(asio::make_strand(run.ioc_)), timer_(ws_.get_executor()) {}

  void Connect() {
    const ClientOptions& o = run_.options_;
    beast::error_code ec;
    const asio::ip::address address = asio::ip::make_address(o.host, ec);
    if (ec) {
      run_.ConnectSettled(shared_from_this(), false);
      return;
    }
    tcp::socket& socket = beast::get_lowest_layer(ws_);
    socket.open(tcp::v4(), ec);
    if (!ec && o.source_addresses > 1 && address.is_loopback()) {
      // Let connect() pick the port per destination (4-tuple), not bind(): otherwise
      // every source address would still share one ephemeral port range.
      const int one = 1;
      ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      const uint32_t host_part = 1 + static_cast<uint32_t>(index_ % o.source_addresses);
      socket.bind(tcp::endpoint(asio::ip::address_v4((127u << 24) | host_part), 0), ec);
    }
    if (ec) {
      run_.ConnectSettled(shared_from_this(), false);
      return;
    }
    // A server too busy to accept must not hang the run: give up on the attempt.
    timer_.expires_after(absl::ToChronoNanoseconds(o.connect_timeout));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && !self->settled_) {
        beast::get_lowest_layer(self->ws_).close(ec);
      }
    });
    socket.async_connect(tcp::endpoint(address, o.port),
                         beast::bind_front_handler(&Connection::OnConnect, shared_from_this()));
  }

  void BeginTurns(Clock::duration delay) {
    timer_.expires_after(delay);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) {
        self->StartTurn();
      }
    });
  }

  asio::any_io_executor executor() { return ws_.get_executor(); }

  void Ping() {
    if (!open_ || closing_) {
      run_.PingDone(false);
      return;
    }
    awaiting_pong_ = true;
    Send(R"({"type":"ping"})");
  }

  void Close() {
    if (!open_ || closing_) {
      run_.Closed();
      return;
    }
    closing_ = true;
    if (writing_) {
      // Close after the write in flight; Beast allows one write operation at a time.
      close_after_write_ = true;
      return;
    }
    DoClose();
  }

 private:
  void Settle(bool ok) {
    settled_ = true;
    timer_.cancel();
    run_.ConnectSettled(shared_from_this(), ok);
  }

  void OnConnect(beast::error_code ec) {
    if (ec) {
      Settle(false);
      return;
    }
    beast::get_lowest_layer(ws_).set_option(tcp::no_delay(true), ec);
    ws_.read_message_max(1 << 20);
    const ClientOptions& o = run_.options_;
    ws_.async_handshake(absl::StrCat(o.host, ":", o.port), o.path,
                        beast::bind_front_handler(&Connection::OnHandshake, shared_from_this()));
  }

  void OnHandshake(beast::error_code ec) {
    if (ec) {
      Settle(false);
      return;
    }
    open_ = true;
    Settle(true);
    Read();
  }

  void Read() {
    ws_.async_read(buffer_, beast::bind_front_handler(&Connection::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec) {
      const bool expected = closing_;
      open_ = false;
      if (!expected) {
        run_.counters_.disconnects.fetch_add(1);
      }
      if (in_turn_) {
        FailTurn();
      }
      if (running_turns_) {
        StopTurns();
      }
      if (awaiting_pong_) {
        awaiting_pong_ = false;
        run_.PingDone(false);
      }
      return;
    }
    const Clock::time_point now = Clock::now();
    HandleFrame(now);
    buffer_.consume(buffer_.size());
    Read();
  }

  void HandleFrame(Clock::time_point now) {
    json::error_code ec;
    json::value frame = json::parse(
        std::string_view(static_cast<const char*>(buffer_.data().data()), buffer_.size()), ec);
    const json::object* object = ec ? nullptr : frame.if_object();
    const json::value* type = object ? object->if_contains("type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      run_.counters_.protocol_errors.fetch_add(1);
      return;
    }
    const json::string& t = type->get_string();
    if (t == "stream_token") {
      OnToken(*object, now);
    } else if (t == "stream_complete") {
      OnComplete(*object, now);
    } else if (t == "ack" || t == "stream_start") {
      if (const json::value* m = object->if_contains("messageId"); m && m->is_string()) {
        message_id_ = std::string(m->get_string());
      }
      if (const json::value* c = object->if_contains("conversationId"); c && c->is_string()) {
        conversation_id_ = std::string(c->get_string());
      }
    } else if (t == "error") {
      run_.counters_.error_frames.fetch_add(1);
      if (in_turn_) {
        FailTurn();
        NextTurn();
      }
    } else if (t == "pong") {
      if (awaiting_pong_) {
        awaiting_pong_ = false;
        run_.PingDone(true);
      }
    }
    // Other frames (typing indicators, usage...) are allowed and ignored.
  }

  void OnToken(const json::object& frame, Clock::time_point now) {
    const json::value* seq_value = frame.if_contains("seq");
    if (!in_turn_ || seq_value == nullptr || !seq_value->is_int64()) {
      run_.counters_.protocol_errors.fetch_add(1);
      return;
    }
    const int64_t seq = seq_value->get_int64();
    if (seq < 1 || seq > kMaxSeq) {
      run_.counters_.protocol_errors.fetch_add(1);
      return;
    }
    if (tokens_ == 0) {
      ttft_ms_ = Ms(now - sent_at_);
    } else {
      gaps_.push_back(static_cast<float>(Ms(now - last_token_at_)));
    }
    last_token_at_ = now;
    ++tokens_;
    if (static_cast<size_t>(seq) > seen_.size()) {
      seen_.resize(static_cast<size_t>(seq), 0);
    }
    uint8_t& seen = seen_[static_cast<size_t>(seq) - 1];
    if (seen) {
      ++repeated_;
    } else {
      seen = 1;
      if (seq < max_seq_) {
        ++out_of_order_;
      }
    }
    max_seq_ = std::max(max_seq_, seq);
  }

  void OnComplete(const json::object& frame, Clock::time_point now) {
    if (!in_turn_) {
      run_.counters_.protocol_errors.fetch_add(1);
      return;
    }
    int64_t last_seq = max_seq_;
    if (const json::value* l = frame.if_contains("lastSeq"); l && l->is_int64()) {
      last_seq = l->get_int64();
    }
    bool mismatch = last_seq != max_seq_;
    last_seq = std::clamp<int64_t>(std::max(last_seq, max_seq_), 0, kMaxSeq);
    if (static_cast<size_t>(last_seq) > seen_.size()) {
      seen_.resize(static_cast<size_t>(last_seq), 0);
    }
    const int64_t lost = std::count(seen_.begin(), seen_.begin() + last_seq, uint8_t{0});
    // The engine's tokens, not the frames that carried them: an edge that merges deltas sends
    // fewer stream_tokens for the same reply. A reply without usage counts its frames.
    int64_t engine_tokens = tokens_;
    if (const json::value* usage = frame.if_contains("usage"); usage && usage->is_object()) {
      if (const json::value* count = usage->get_object().if_contains("completionTokens");
          count && count->is_int64()) {
        engine_tokens = count->get_int64();
      }
    }
    Counters& c = run_.counters_;
    c.tokens.fetch_add(engine_tokens);
    c.frames.fetch_add(tokens_);
    c.lost.fetch_add(lost);
    c.repeated.fetch_add(repeated_);
    c.out_of_order.fetch_add(out_of_order_);
    if (mismatch) {
      c.last_seq_mismatches.fetch_add(1);
    }
    if (lost > 0 || repeated_ > 0 || out_of_order_ > 0 || mismatch) {
      c.faulty_messages.fetch_add(1);
    }
    c.turns_completed.fetch_add(1);
    run_.RecordTurn(tokens_ > 0 ? ttft_ms_ : -1, Ms(now - sent_at_), engine_tokens, gaps_, sent_at_,
                    now);
    EndTurn();
    NextTurn();
  }

  using Counters = LoadClient::Impl::Counters;

  void StartTurn() {
    const ClientOptions& o = run_.options_;
    const Clock::time_point now = Clock::now();
    const int64_t max_turns =
        o.duration > absl::ZeroDuration() ? std::numeric_limits<int64_t>::max() : o.turns;
    if (!open_ || closing_ || turns_done_ >= max_turns || !run_.Accepting(now)) {
      StopTurns();
      return;
    }
    running_turns_ = true;
    in_turn_ = true;
    ++turns_done_;
    tokens_ = 0;
    max_seq_ = 0;
    repeated_ = 0;
    out_of_order_ = 0;
    seen_.clear();
    gaps_.clear();
    message_id_.clear();
    json::object frame{{"type", "message"},
                       {"id", absl::StrCat("b", index_, "-", turns_done_)},
                       {"content", o.content}};
    if (o.same_conversation && !conversation_id_.empty()) {
      frame["conversationId"] = conversation_id_;
    }
    if (!o.model.empty()) {
      frame["model"] = o.model;
    }
    run_.counters_.turns_started.fetch_add(1);
    sent_at_ = Clock::now();
    Send(json::serialize(frame));
    timer_.expires_after(absl::ToChronoNanoseconds(o.turn_timeout));
    timer_.async_wait([self = shared_from_this(), turn = turns_done_](beast::error_code ec) {
      if (ec || !self->in_turn_ || self->turns_done_ != turn) {
        return;
      }
      // A stream that stalls this long is counted and the connection given up:
      // its state is unknown, so later turns on it would measure nonsense.
      self->run_.counters_.turn_timeouts.fetch_add(1);
      self->FailTurn();
      self->StopTurns();
      self->closing_ = true;
      beast::get_lowest_layer(self->ws_).close(ec);
    });
  }

  void EndTurn() {
    in_turn_ = false;
    timer_.cancel();
    // Keep no per-reply memory between turns.
    std::vector<uint8_t>().swap(seen_);
    std::vector<float>().swap(gaps_);
  }

  void FailTurn() {
    run_.counters_.turns_failed.fetch_add(1);
    run_.counters_.tokens.fetch_add(tokens_);
    run_.counters_.frames.fetch_add(tokens_);
    EndTurn();
  }

  void NextTurn() {
    asio::post(ws_.get_executor(), [self = shared_from_this()] { self->StartTurn(); });
  }

  void StopTurns() {
    if (!turns_reported_) {
      turns_reported_ = true;
      running_turns_ = false;
      run_.TurnsFinished();
    }
  }

  void Send(std::string frame) {
    queue_.push_back(std::move(frame));
    if (!writing_) {
      Write();
    }
  }

  void Write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front()),
                    beast::bind_front_handler(&Connection::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t /*bytes*/) {
    writing_ = false;
    queue_.pop_front();
    if (ec) {
      queue_.clear();
    } else if (!queue_.empty()) {
      Write();
      return;
    }
    if (close_after_write_) {
      close_after_write_ = false;
      DoClose();
    }
  }

  void DoClose() {
    timer_.cancel();
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code) { self->run_.Closed(); });
  }

  LoadClient::Impl& run_;
  const int64_t index_;
  websocket::stream<tcp::socket> ws_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  std::string conversation_id_;
  std::string message_id_;
  bool settled_ = false;  // the connect attempt has been reported
  bool open_ = false;
  bool closing_ = false;
  bool close_after_write_ = false;
  bool writing_ = false;
  bool awaiting_pong_ = false;
  bool in_turn_ = false;
  bool running_turns_ = false;
  bool turns_reported_ = false;
  int64_t turns_done_ = 0;
  // The reply in flight.
  Clock::time_point sent_at_;
  Clock::time_point last_token_at_;
  double ttft_ms_ = 0;
  int64_t tokens_ = 0;
  int64_t max_seq_ = 0;
  int64_t repeated_ = 0;
  int64_t out_of_order_ = 0;
  std::vector<uint8_t> seen_;  // seen_[seq - 1]
  std::vector<float> gaps_;    // flushed once per reply, not once per token
};

LoadClient::Impl::~Impl() {
  guard_.reset();
  ioc_.stop();
  for (std::thread& t : threads_) {
    t.join();
  }
  absl::MutexLock lock(&connections_mutex_);
  connections_.clear();
}

void LoadClient::Impl::Connect() {
  connects_.Reset(options_.connections);
  next_index_.store(0);
  const int64_t initial =
      std::min<int64_t>(options_.connections, std::max(1, options_.connect_parallelism));
  for (int64_t i = 0; i < initial; ++i) {
    LaunchNext();
  }
  connects_.Wait(absl::InfiniteDuration());
}

void LoadClient::Impl::LaunchNext() {
  const int64_t index = next_index_.fetch_add(1);
  if (index >= options_.connections) {
    return;
  }
  auto connection = std::make_shared<Connection>(*this, index);
  asio::post(ioc_, [connection] { connection->Connect(); });
}

void LoadClient::Impl::ConnectSettled(const std::shared_ptr<Connection>& connection, bool ok) {
  if (ok) {
    absl::MutexLock lock(&connections_mutex_);
    connections_.push_back(connection);
  } else {
    counters_.connect_failures.fetch_add(1);
  }
  LaunchNext();
  connects_.Done();
}

std::vector<std::shared_ptr<Connection>> LoadClient::Impl::Established() {
  absl::MutexLock lock(&connections_mutex_);
  return connections_;
}

void LoadClient::Impl::RunTurns() {
  const std::vector<std::shared_ptr<Connection>> connections = Established();
  turns_done_.Reset(static_cast<int64_t>(connections.size()));
  turns_start_ = Clock::now();
  if (options_.duration > absl::ZeroDuration()) {
    deadline_ = turns_start_ + absl::ToChronoNanoseconds(options_.ramp + options_.duration);
  }
  const double n = static_cast<double>(connections.size());
  for (size_t i = 0; i < connections.size(); ++i) {
    const auto delay = std::chrono::duration_cast<Clock::duration>(
        absl::ToChronoNanoseconds(options_.ramp) * (static_cast<double>(i) / n));
    asio::post(connections[i]->executor(), [c = connections[i], delay] { c->BeginTurns(delay); });
  }
  turns_done_.Wait(absl::InfiniteDuration());
}

int64_t LoadClient::Impl::PingAll(absl::Duration timeout) {
  const int64_t before = counters_.pongs.load();
  const std::vector<std::shared_ptr<Connection>> connections = Established();
  pinged_.Reset(static_cast<int64_t>(connections.size()));
  for (const auto& c : connections) {
    asio::post(c->executor(), [c] { c->Ping(); });
  }
  pinged_.Wait(timeout);
  return counters_.pongs.load() - before;
}

void LoadClient::Impl::CloseAll(absl::Duration timeout) {
  const std::vector<std::shared_ptr<Connection>> connections = Established();
  closed_.Reset(static_cast<int64_t>(connections.size()));
  for (const auto& c : connections) {
    asio::post(c->executor(), [c] { c->Close(); });
  }
  closed_.Wait(timeout);
}

void LoadClient::Impl::RecordTurn(double ttft_ms, double e2e_ms, int64_t tokens,
                                  const std::vector<float>& gaps, Clock::time_point sent_at,
                                  Clock::time_point done_at) {
  absl::MutexLock lock(&samples_mutex_);
  if (ttft_ms >= 0) {
    ttft_.push_back(ttft_ms);
  }
  e2e_.push_back(e2e_ms);
  if (tokens > 1) {
    tpot_.push_back((e2e_ms - ttft_ms) / static_cast<double>(tokens - 1));
  }
  itl_.insert(itl_.end(), gaps.begin(), gaps.end());
  first_send_ = std::min(first_send_, sent_at);
  last_done_ = std::max(last_done_, done_at);
}

ClientReport LoadClient::Impl::Report() {
  ClientReport r;
  const Counters& c = counters_;
  r.connections_attempted = options_.connections;
  r.connect_failures = c.connect_failures.load();
  r.connections_established = r.connections_attempted - r.connect_failures;
  r.disconnects = c.disconnects.load();
  r.turns_started = c.turns_started.load();
  r.turns_completed = c.turns_completed.load();
  r.turns_failed = c.turns_failed.load();
  r.turn_timeouts = c.turn_timeouts.load();
  r.error_frames = c.error_frames.load();
  r.protocol_errors = c.protocol_errors.load();
  r.tokens = c.tokens.load();
  r.token_frames = c.frames.load();
  r.lost_seqs = c.lost.load();
  r.repeated_seqs = c.repeated.load();
  r.out_of_order_seqs = c.out_of_order.load();
  r.last_seq_mismatches = c.last_seq_mismatches.load();
  r.faulty_messages = c.faulty_messages.load();
  r.pongs = c.pongs.load();
  absl::MutexLock lock(&samples_mutex_);
  if (last_done_ > first_send_) {
    r.duration_s = std::chrono::duration<double>(last_done_ - first_send_).count();
    r.tokens_per_second = static_cast<double>(r.tokens) / r.duration_s;
    r.turns_per_second = static_cast<double>(r.turns_completed) / r.duration_s;
  }
  std::vector<double> copy = ttft_;
  r.ttft_ms = Summarize(copy);
  copy = itl_;
  r.itl_ms = Summarize(copy);
  copy = tpot_;
  r.tpot_ms = Summarize(copy);
  copy = e2e_;
  r.e2e_ms = Summarize(copy);
  return r;
}

boost::json::object ClientReport::ToJson() const {
  return json::object{
      {"connections",
       {{"attempted", connections_attempted},
        {"established", connections_established},
        {"connect_failures", connect_failures},
        {"disconnects", disconnects}}},
      {"turns",
       {{"started", turns_started},
        {"completed", turns_completed},
        {"failed", turns_failed},
        {"timeouts", turn_timeouts}}},
      {"errors", {{"error_frames", error_frames}, {"protocol_errors", protocol_errors}}},
      {"seq",
       {{"lost", lost_seqs},
        {"repeated", repeated_seqs},
        {"out_of_order", out_of_order_seqs},
        {"last_seq_mismatches", last_seq_mismatches},
        {"faulty_messages", faulty_messages}}},
      {"tokens", tokens},
      {"token_frames", token_frames},
      {"pongs", pongs},
      {"duration_s", duration_s},
      {"tokens_per_second", tokens_per_second},
      {"turns_per_second", turns_per_second},
      {"ttft_ms", bench::ToJson(ttft_ms)},
      {"itl_ms", bench::ToJson(itl_ms)},
      {"tpot_ms", bench::ToJson(tpot_ms)},
      {"e2e_ms", bench::ToJson(e2e_ms)},
  };
}

LoadClient::LoadClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
LoadClient::~LoadClient() = default;
void LoadClient::Connect() { impl_->Connect(); }
void LoadClient::RunTurns() { impl_->RunTurns(); }
int64_t LoadClient::PingAll(absl::Duration timeout) { return impl_->PingAll(timeout); }
void LoadClient::CloseAll(absl::Duration timeout) { impl_->CloseAll(timeout); }
ClientReport LoadClient::Report() { return impl_->Report(); }

}  // namespace parley::bench
