#include "tools/parley-bench/direct_server.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/json.hpp"
#include "tools/parley-bench/listen.h"

namespace parley::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// A few words so that token frames have realistic sizes.
constexpr std::string_view kWords[] = {"the ",   "model ", "streams ", "tokens ",
                                       "to ",    "every ", "client ",  "quickly, ",
                                       "while ", "it ",    "keeps ",   "order. "};

std::string Serialize(const json::object& object) { return json::serialize(object); }

// What every session of one server shares; sessions keep it alive.
struct Shared {
  explicit Shared(DirectOptions o) : options(o) {}
  const DirectOptions options;
  std::atomic<uint64_t> ids{1};
};

// One reply being streamed on a session.
struct Turn {
  explicit Turn(asio::any_io_executor executor) : timer(std::move(executor)) {}
  std::string message_id;
  int64_t next_seq = 1;  // the next seq of the schedule, before any injected fault
  Clock::time_point first_token_at;
  asio::steady_timer timer;
  bool held = false;  // kReorderSeq: seq 3 is waiting to go out after seq 4
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared)
      : ws_(std::move(socket)), shared_(std::move(shared)), options_(shared_->options) {}

  void Start() {
    // Token frames are small and latency is the point: no Nagle delay.
    beast::error_code ec;
    ws_.next_layer().set_option(tcp::no_delay(true), ec);
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(64 * 1024);
    ws_.async_accept(beast::bind_front_handler(&Session::OnAccept, shared_from_this()));
  }

 private:
  void OnAccept(beast::error_code ec) {
    if (ec) {
      return;
    }
    Read();
  }

  void Read() {
    ws_.async_read(buffer_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec) {
      closed_ = true;
      return;
    }
    const std::string text = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    HandleFrame(text);
    Read();
  }

  void HandleFrame(const std::string& text) {
    json::error_code ec;
    json::value frame = json::parse(text, ec);
    const json::object* object = ec ? nullptr : frame.if_object();
    const json::value* type = object ? object->if_contains("type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      SendError("invalid_frame", "frame is not a JSON object with a type", "");
      return;
    }
    if (type->get_string() == "ping") {
      Send(Serialize({{"type", "pong"}}));
      return;
    }
    if (type->get_string() != "message") {
      SendError("unknown_type", "unknown frame type", "");
      return;
    }
    const json::value* id = object->if_contains("id");
    const json::value* content = object->if_contains("content");
    if (id == nullptr || !id->is_string() || content == nullptr || !content->is_string()) {
      SendError("invalid_frame", "message needs id and content", "");
      return;
    }
    std::string conversation_id;
    if (const json::value* c = object->if_contains("conversationId"); c && c->is_string()) {
      conversation_id = std::string(c->get_string());
    } else {
      conversation_id = absl::StrCat("c", shared_->ids.fetch_add(1));
    }
    StartTurn(std::string(id->get_string()), conversation_id);
  }

  void StartTurn(const std::string& client_id, const std::string& conversation_id) {
    auto turn = std::make_shared<Turn>(ws_.get_executor());
    turn->message_id = absl::StrCat("m", shared_->ids.fetch_add(1));
    Send(Serialize({{"type", "ack"},
                    {"id", client_id},
                    {"conversationId", conversation_id},
                    {"messageId", turn->message_id}}));
    Send(Serialize({{"type", "stream_start"},
                    {"conversationId", conversation_id},
                    {"messageId", turn->message_id},
                    {"model", "simulated"}}));
    turn->first_token_at = Clock::now() + std::chrono::milliseconds(options_.ttft_ms);
    if (options_.max_tokens <= 0) {
      Complete(*turn);
      return;
    }
    if (options_.tokens_per_second <= 0 && options_.ttft_ms <= 0) {
      unpaced_.push_back(turn);
      Pump();
      return;
    }
    ScheduleNext(turn);
  }

  void ScheduleNext(const std::shared_ptr<Turn>& turn) {
    Clock::time_point at = turn->first_token_at;
    if (options_.tokens_per_second > 0) {
      at += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
          static_cast<double>(turn->next_seq - 1) / options_.tokens_per_second));
    }
    turn->timer.expires_at(at);
    turn->timer.async_wait([self = shared_from_this(), turn](beast::error_code ec) {
      if (ec || self->closed_) {
        return;
      }
      if (self->options_.tokens_per_second <= 0) {
        // Time to first token has passed; the rest of an unpaced reply follows the socket.
        self->unpaced_.push_back(turn);
        self->Pump();
        return;
      }
      if (self->EmitNext(*turn)) {
        self->ScheduleNext(turn);
      }
    });
  }

  // Sends the next token of `turn` (applying the injected fault); returns false
  // once the reply is complete.
  bool EmitNext(Turn& turn) {
    const int64_t seq = turn.next_seq++;
    switch (options_.inject) {
      case Inject::kDropSeq:
        if (seq != 3) {
          SendToken(turn, seq);
        }
        break;
      case Inject::kRepeatSeq:
        SendToken(turn, seq);
        if (seq == 3) {
          SendToken(turn, seq);
        }
        break;
      case Inject::kReorderSeq:
        if (seq == 3 && options_.max_tokens >= 4) {
          turn.held = true;
        } else {
          SendToken(turn, seq);
          if (turn.held) {
            turn.held = false;
            SendToken(turn, 3);
          }
        }
        break;
      case Inject::kNone:
        SendToken(turn, seq);
        break;
    }
    if (seq >= options_.max_tokens) {
      Complete(turn);
      return false;
    }
    return true;
  }

  void SendToken(const Turn& turn, int64_t seq) {
    Send(Serialize({{"type", "stream_token"},
                    {"messageId", turn.message_id},
                    {"seq", seq},
                    {"token", kWords[static_cast<size_t>(seq) % std::size(kWords)]}}));
  }

  void Complete(const Turn& turn) {
    Send(Serialize({{"type", "stream_complete"},
                    {"messageId", turn.message_id},
                    {"lastSeq", options_.max_tokens},
                    {"finishReason", "length"},
                    {"usage", {{"promptTokens", 8}, {"completionTokens", options_.max_tokens}}}}));
  }

  void SendError(std::string_view code, std::string_view message, std::string_view id) {
    json::object frame{{"type", "error"}, {"code", code}, {"message", message}};
    if (!id.empty()) {
      frame["id"] = id;
    }
    Send(Serialize(frame));
  }

  // Unpaced replies are produced only as fast as the socket drains, one frame
  // ahead, the way a backpressured edge would behave.
  void Pump() {
    while (!unpaced_.empty() && queue_.size() < 2) {
      std::shared_ptr<Turn> turn = unpaced_.front();
      unpaced_.pop_front();
      if (EmitNext(*turn)) {
        unpaced_.push_back(std::move(turn));
      }
    }
  }

  void Send(std::string frame) {
    if (closed_) {
      return;
    }
    queue_.push_back(std::move(frame));
    if (queue_.size() == 1) {
      Write();
    }
  }

  void Write() {
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front()),
                    beast::bind_front_handler(&Session::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t /*bytes*/) {
    if (ec) {
      closed_ = true;
      queue_.clear();
      unpaced_.clear();
      return;
    }
    queue_.pop_front();
    if (!queue_.empty()) {
      Write();
    }
    Pump();
  }

  websocket::stream<tcp::socket> ws_;
  const std::shared_ptr<Shared> shared_;
  const DirectOptions& options_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  std::deque<std::shared_ptr<Turn>> unpaced_;
  bool closed_ = false;
};

}  // namespace

absl::StatusOr<Inject> ParseInject(const std::string& name) {
  if (name.empty() || name == "none") {
    return Inject::kNone;
  }
  if (name == "drop_seq") {
    return Inject::kDropSeq;
  }
  if (name == "repeat_seq") {
    return Inject::kRepeatSeq;
  }
  if (name == "reorder_seq") {
    return Inject::kReorderSeq;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown fault '", name, "' (none, drop_seq, repeat_seq, reorder_seq)"));
}

struct DirectServer::State : std::enable_shared_from_this<DirectServer::State> {
  State(asio::io_context& ioc, DirectOptions options)
      : ioc(ioc), acceptor(ioc), shared(std::make_shared<Shared>(options)) {}

  void Accept() {
    acceptor.async_accept(asio::make_strand(ioc),
                          [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                            if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) {
                              return;
                            }
                            if (!ec) {
                              std::make_shared<Session>(std::move(socket), self->shared)->Start();
                            }
                            // Out of file descriptors and similar errors are transient.
                            self->Accept();
                          });
  }

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  std::shared_ptr<Shared> shared;
};

DirectServer::DirectServer(asio::io_context& ioc, DirectOptions options)
    : state_(std::make_shared<State>(ioc, options)) {}

DirectServer::~DirectServer() { Stop(); }

absl::StatusOr<uint16_t> DirectServer::Listen(const std::string& host, uint16_t port) {
  absl::StatusOr<uint16_t> bound = BindAndListen(state_->acceptor, host, port);
  if (bound.ok()) {
    state_->Accept();
  }
  return bound;
}

void DirectServer::Stop() {
  asio::post(state_->acceptor.get_executor(), [state = state_] {
    beast::error_code ec;
    state->acceptor.close(ec);
  });
}

}  // namespace parley::bench
