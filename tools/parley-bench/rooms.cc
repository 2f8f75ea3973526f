#include "tools/parley-bench/rooms.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/json.hpp"
#include "grpcpp/grpcpp.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "tools/parley-bench/proc_stats.h"
#include "tools/parley-bench/stats.h"

namespace parley::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
namespace persistence_pb = ::parley::persistence::v1;
using Clock = std::chrono::steady_clock;

// One WebSocket of the benchmark: frames are written one at a time from a queue and read in a
// loop; every handler runs on the connection's strand.
class Socket : public std::enable_shared_from_this<Socket> {
 public:
  explicit Socket(net::io_context& io) : strand_(net::make_strand(io)), ws_(strand_) {}

  // `on_frame` runs on the strand for every text frame.
  void Open(const std::string& host, uint16_t port, const std::string& path,
            std::function<void(const json::object&)> on_frame, std::function<void(bool)> done) {
    on_frame_ = std::move(on_frame);
    boost::system::error_code ec;
    const net::ip::tcp::endpoint endpoint(net::ip::make_address(host, ec), port);
    if (ec) {
      return done(false);
    }
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(ws_).async_connect(
        endpoint, [self = shared_from_this(), host = absl::StrCat(host, ":", port), path,
                   done = std::move(done)](const boost::system::error_code& error) mutable {
          if (error) {
            return done(false);
          }
          self->ws_.async_handshake(
              host, path,
              [self, done = std::move(done)](const boost::system::error_code& error) mutable {
                beast::get_lowest_layer(self->ws_).expires_never();
                if (error) {
                  return done(false);
                }
                self->open_ = true;
                self->Read();
                done(true);
              });
        });
  }

  void Send(std::string text) {
    net::post(strand_, [self = shared_from_this(), text = std::move(text)]() mutable {
      if (!self->open_) {
        return;
      }
      self->queue_.push_back(std::move(text));
      if (self->queue_.size() == 1) {
        self->WriteNext();
      }
    });
  }

  void Close() {
    net::post(strand_, [self = shared_from_this()] {
      if (self->open_) {
        self->open_ = false;
        self->ws_.async_close(websocket::close_code::normal,
                              [self](const boost::system::error_code&) {});
      }
    });
  }

  net::strand<net::io_context::executor_type>& strand() { return strand_; }

 private:
  void WriteNext() {
    ws_.async_write(net::buffer(queue_.front()),
                    [self = shared_from_this()](const boost::system::error_code& error, size_t) {
                      self->queue_.pop_front();
                      if (!error && !self->queue_.empty()) {
                        self->WriteNext();
                      }
                    });
  }

  void Read() {
    ws_.async_read(buffer_, [self = shared_from_this()](const boost::system::error_code& error,
                                                        size_t) {
      if (error) {
        self->open_ = false;
        return;
      }
      boost::system::error_code parse_error;
      json::value frame = json::parse(beast::buffers_to_string(self->buffer_.data()), parse_error);
      self->buffer_.consume(self->buffer_.size());
      if (!parse_error && frame.is_object()) {
        self->on_frame_(frame.as_object());
      }
      self->Read();
    });
  }

  net::strand<net::io_context::executor_type> strand_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  std::function<void(const json::object&)> on_frame_;
  bool open_ = false;
};

struct Room {
  std::string user_id;
  std::string conversation_id;
  std::shared_ptr<Socket> sender;
  std::shared_ptr<Socket> viewer;
  std::unique_ptr<net::steady_timer> timer;
  // When the typing frame the viewer waits for was sent; 0: none outstanding.
  std::atomic<int64_t> sent_ns{0};
  bool typing = false;
};

std::string Str(const json::object& frame, const char* key) {
  const json::value* value = frame.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->get_string()) : "";
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// CPU seconds of a process and every process it started (PostgreSQL's backends), and how many
// of them serve a client connection.
struct TreeSample {
  double cpu_seconds = 0;
  int64_t client_backends = 0;
};

TreeSample SampleTree(pid_t root) {
  TreeSample sample;
  if (root <= 0) {
    return sample;
  }
  std::vector<pid_t> pids = {root};
  std::ifstream children(absl::StrCat("/proc/", root, "/task/", root, "/children"));
  std::string word;
  while (children >> word) {
    pid_t child = 0;
    if (absl::SimpleAtoi(word, &child)) {
      pids.push_back(child);
    }
  }
  for (pid_t pid : pids) {
    if (absl::StatusOr<ProcSample> proc = ReadProc(pid); proc.ok()) {
      sample.cpu_seconds += proc->cpu_seconds;
    }
    std::ifstream cmdline(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string command;
    std::getline(cmdline, command, '\0');
    // A client backend names itself "postgres: USER DATABASE HOST(PORT) STATE".
    if (pid != root && absl::StartsWith(command, "postgres: ") && absl::StrContains(command, "(")) {
      ++sample.client_backends;
    }
  }
  return sample;
}

double CpuOf(const WatchedPids& pids, absl::string_view role) {
  double total = 0;
  for (const auto& [name, pid] : pids) {
    if (name == role) {
      if (absl::StatusOr<ProcSample> proc = ReadProc(pid); proc.ok()) {
        total += proc->cpu_seconds;
      }
    }
  }
  return total;
}

// Opens `count` sockets a batch at a time, so the edges' accept queues never overflow.
bool OpenAll(std::vector<std::function<void(std::function<void(bool)>)>>& opens) {
  constexpr size_t kBatch = 200;
  std::atomic<int64_t> failed{0};
  for (size_t begin = 0; begin < opens.size(); begin += kBatch) {
    const size_t end = std::min(opens.size(), begin + kBatch);
    absl::BlockingCounter done(static_cast<int>(end - begin));
    for (size_t i = begin; i < end; ++i) {
      opens[i]([&](bool ok) {
        if (!ok) {
          failed.fetch_add(1);
        }
        done.DecrementCount();
      });
    }
    done.Wait();
  }
  return failed.load() == 0;
}

json::object RunStep(const RoomsOptions& options, int64_t count) {
  net::io_context io;
  auto work = net::make_work_guard(io);
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  json::object result{{"rooms", count}};
  auto finish = [&] {
    work.reset();
    io.stop();
    for (std::thread& thread : threads) {
      thread.join();
    }
  };

  // Each room is its own user's conversation, stored before anyone joins it.
  auto stub = persistence_pb::ConversationService::NewStub(
      grpc::CreateChannel(options.persistence, grpc::InsecureChannelCredentials()));
  absl::BitGen bits;
  const std::string run = absl::StrCat(absl::Hex(absl::Uniform<uint32_t>(bits)));
  std::vector<std::unique_ptr<Room>> rooms;
  for (int64_t i = 0; i < count; ++i) {
    auto room = std::make_unique<Room>();
    room->user_id = absl::StrCat("rooms-", run, "-", i);
    persistence_pb::CreateConversationRequest request;
    request.set_user_id(room->user_id);
    request.set_title("rooms benchmark");
    persistence_pb::CreateConversationResponse response;
    grpc::ClientContext context;
    if (!stub->CreateConversation(&context, request, &response).ok()) {
      result["error"] = "cannot create conversations";
      finish();
      return result;
    }
    room->conversation_id = response.conversation().id();
    room->sender = std::make_shared<Socket>(io);
    room->viewer = std::make_shared<Socket>(io);
    room->timer = std::make_unique<net::steady_timer>(room->sender->strand());
    rooms.push_back(std::move(room));
  }

  absl::Mutex mutex;
  std::vector<double> delays_ms;
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> lost{0};
  std::atomic<bool> measuring{false};
  absl::Mutex join_mutex;
  int64_t joins_left = 2 * count;

  std::vector<std::function<void(std::function<void(bool)>)>> opens;
  for (const std::unique_ptr<Room>& room_ptr : rooms) {
    Room* room = room_ptr.get();
    const std::string path = absl::StrCat("/ws/chat?userId=", room->user_id);
    auto on_joined = [&join_mutex, &joins_left](const json::object& frame) {
      if (Str(frame, "type") == "joined") {
        absl::MutexLock lock(&join_mutex);
        joins_left = std::max<int64_t>(0, joins_left - 1);
      }
    };
    opens.push_back([&options, room, path, on_joined](std::function<void(bool)> done) {
      room->sender->Open(options.sender_host, options.sender_port, path, on_joined,
                         std::move(done));
    });
    opens.push_back([&, room, path, on_joined](std::function<void(bool)> done) {
      room->viewer->Open(
          options.viewer_host, options.viewer_port, path,
          [&, room, on_joined](const json::object& frame) {
            on_joined(frame);
            if (Str(frame, "type") != "typing") {
              return;
            }
            const int64_t sent_ns = room->sent_ns.exchange(0);
            if (sent_ns != 0 && measuring.load()) {
              const double delay = static_cast<double>(NowNs() - sent_ns) / 1e6;
              absl::MutexLock lock(&mutex);
              delays_ms.push_back(delay);
            }
          },
          std::move(done));
    });
  }
  if (!OpenAll(opens)) {
    result["error"] = "cannot open every WebSocket";
    finish();
    return result;
  }
  for (const std::unique_ptr<Room>& room : rooms) {
    const std::string join =
        json::serialize(json::object{{"type", "join"}, {"conversationId", room->conversation_id}});
    room->viewer->Send(join);
    room->sender->Send(join);
  }
  {
    absl::MutexLock lock(&join_mutex);
    auto all_joined = [&joins_left]() { return joins_left == 0; };
    if (!join_mutex.AwaitWithTimeout(absl::Condition(&all_joined), absl::Seconds(120))) {
      result["error"] = "not every join was answered";
    }
  }

  // Each room types every `interval`, at its own phase, one frame in flight at a time.
  const auto interval = absl::ToChronoNanoseconds(options.interval);
  std::function<void(Room*)> type = [&](Room* room) {
    if (!measuring.load()) {
      return;
    }
    if (room->sent_ns.exchange(NowNs()) != 0) {
      lost.fetch_add(1);
    }
    room->typing = !room->typing;
    sent.fetch_add(1);
    room->sender->Send(json::serialize(json::object{{"type", "typing"},
                                                    {"conversationId", room->conversation_id},
                                                    {"isTyping", room->typing}}));
    room->timer->expires_after(interval);
    room->timer->async_wait([&, room](const boost::system::error_code& error) {
      if (!error) {
        type(room);
      }
    });
  };

  const TreeSample postgres_before = SampleTree(options.postgres_pid);
  const double persistence_before = CpuOf(options.pids, "persistence");
  const double edge_before = CpuOf(options.pids, "edge");
  const absl::Time start = absl::Now();
  measuring = true;
  for (const std::unique_ptr<Room>& room : rooms) {
    Room* raw = room.get();
    const auto phase = std::chrono::nanoseconds(absl::Uniform<int64_t>(bits, 0, interval.count()));
    raw->timer->expires_after(phase);
    raw->timer->async_wait([&, raw](const boost::system::error_code& error) {
      if (!error) {
        type(raw);
      }
    });
  }
  std::this_thread::sleep_for(absl::ToChronoNanoseconds(options.duration));
  const TreeSample postgres_after = SampleTree(options.postgres_pid);
  const double persistence_after = CpuOf(options.pids, "persistence");
  const double edge_after = CpuOf(options.pids, "edge");
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  measuring = false;
  for (const std::unique_ptr<Room>& room : rooms) {
    net::post(room->sender->strand(), [timer = room->timer.get()] { timer->cancel(); });
  }
  // Frames still on their way when measuring stopped are not counted as lost.
  int64_t outstanding = 0;
  for (const std::unique_ptr<Room>& room : rooms) {
    outstanding += room->sent_ns.load() != 0 ? 1 : 0;
  }
  for (const std::unique_ptr<Room>& room : rooms) {
    room->sender->Close();
    room->viewer->Close();
  }

  std::vector<double> samples;
  {
    absl::MutexLock lock(&mutex);
    samples = delays_ms;
  }
  const Distribution delay = Summarize(samples);
  const double per_thousand = 1000.0 / static_cast<double>(count);
  const double postgres_cores =
      (postgres_after.cpu_seconds - postgres_before.cpu_seconds) / elapsed;
  result["seconds"] = elapsed;
  result["typing_sent"] = sent.load();
  result["typing_delivered"] = static_cast<int64_t>(delay.count);
  result["typing_lost"] = lost.load();
  result["typing_in_flight_at_end"] = outstanding;
  result["delay_ms"] = ToJson(delay);
  // Each typing frame is one PublishSignal: one transaction with one pg_notify.
  result["notifications_per_second"] = static_cast<double>(sent.load()) / elapsed;
  result["postgres_cpu_cores"] = postgres_cores;
  result["postgres_cpu_cores_per_1000_rooms"] = postgres_cores * per_thousand;
  result["postgres_client_backends"] = postgres_after.client_backends;
  result["persistence_cpu_cores"] = (persistence_after - persistence_before) / elapsed;
  result["edge_cpu_cores"] = (edge_after - edge_before) / elapsed;
  // Let the closes go out before the io_context stops.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  finish();
  return result;
}

double Num(const json::object& object, const char* key) {
  const json::value* value = object.if_contains(key);
  return value != nullptr && value->is_number() ? value->to_number<double>() : 0.0;
}

}  // namespace

json::object RunRooms(const RoomsOptions& options) {
  json::array steps;
  for (int64_t count : options.steps) {
    json::object step = RunStep(options, count);
    if (const json::value* error = step.if_contains("error")) {
      std::fprintf(stderr, "rooms=%lld: %s\n", static_cast<long long>(count),
                   json::serialize(*error).c_str());
    }
    const json::value* delay_value = step.if_contains("delay_ms");
    const json::object delay = delay_value != nullptr && delay_value->is_object()
                                   ? delay_value->as_object()
                                   : json::object();
    std::printf(
        "rooms=%lld sent=%lld delivered=%lld lost=%lld delay_ms p50=%.2f p99=%.2f "
        "notifications/s=%.1f postgres_cores=%.3f (%.3f per 1000 rooms) backends=%lld "
        "persistence_cores=%.3f edge_cores=%.3f\n",
        static_cast<long long>(count), static_cast<long long>(Num(step, "typing_sent")),
        static_cast<long long>(Num(step, "typing_delivered")),
        static_cast<long long>(Num(step, "typing_lost")), Num(delay, "p50"), Num(delay, "p99"),
        Num(step, "notifications_per_second"), Num(step, "postgres_cpu_cores"),
        Num(step, "postgres_cpu_cores_per_1000_rooms"),
        static_cast<long long>(Num(step, "postgres_client_backends")),
        Num(step, "persistence_cpu_cores"), Num(step, "edge_cpu_cores"));
    std::fflush(stdout);
    steps.push_back(std::move(step));
  }
  return json::object{{"workload", "rooms"}, {"steps", std::move(steps)}};
}

}  // namespace parley::bench
