#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge/auth/authenticator.h"
#include "edge/clients/inference_client.h"
#include "edge/clients/persistence_client.h"
#include "edge/limits/origin_allow_list.h"
#include "edge/limits/user_limits.h"
#include "edge/metrics.h"
#include "edge/protocol/engine_io.h"
#include "edge/server/dialects.h"
#include "edge/server/engine_io_session.h"
#include "edge/server/outbound_queue.h"
#include "edge/turn/conversation_rooms.h"
#include "edge/turn/conversation_watch.h"
#include "edge/turn/suggestions.h"
#include "edge/turn/turn.h"
#include "edge/turn/turn_tracker.h"

namespace parley::edge {

// Open WebSocket connections, so shutdown can close each with 1001.
class ConnectionRegistry {
 public:
  uint64_t Add(std::function<void()> close) {
    absl::MutexLock lock(&mutex_);
    open_[next_key_] = std::move(close);
    return next_key_++;
  }
  void Remove(uint64_t key) {
    absl::MutexLock lock(&mutex_);
    open_.erase(key);
  }
  void CloseAll() {
    std::map<uint64_t, std::function<void()>> open;
    {
      absl::MutexLock lock(&mutex_);
      open = open_;
    }
    for (auto& [key, close] : open) {
      close();
    }
  }
  bool WaitUntilEmpty(absl::Duration timeout) {
    absl::MutexLock lock(&mutex_);
    auto empty = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return open_.empty(); };
    return mutex_.AwaitWithTimeout(absl::Condition(&empty), timeout);
  }

 private:
  absl::Mutex mutex_;
  std::map<uint64_t, std::function<void()>> open_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_key_ ABSL_GUARDED_BY(mutex_) = 1;
};

// What one connection may do; every field is a flag of parley-edge.
struct ConnectionLimits {
  // Time a client has to send its HTTP request (and so its WebSocket handshake).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // A WebSocket with nothing received for this long is closed; a ping goes out at half of it,
  // so a client that answers pings stays connected while it waits for a slow model.
  absl::Duration idle_timeout = absl::Seconds(60);
  // Largest client message; a bigger one closes the connection with 1009.
  size_t max_frame_bytes = 64 * 1024;
  // Open client connections on this process (WebSockets, and Engine.IO sessions whichever
  // transport carries them); one more WebSocket is closed with 1013 right after the upgrade.
  int max_connections = 10000;
  // `message` frames per minute on one connection (token bucket); <= 0 disables.
  int messages_per_minute = 30;
  // Back-to-back allowance of that bucket; <= 0 means `messages_per_minute`.
  int message_burst = 10;
  // Water marks and byte cap of the outbound queue.
  OutboundLimits outbound;
  // A connection whose writes make no progress for this long while frames wait is closed with
  // 1008; its running turns carry on and are stored.
  absl::Duration slow_client_timeout = absl::Seconds(30);
  // What gRPC buffers of one reply (or watched message) from inference or persistence while the
  // reply waits for its client: the HTTP/2 stream window, with window growth (BDP) off.
  size_t backend_stream_window_bytes = 64 * 1024;
  // `typing` frames per minute on one connection; the excess is refused, never relayed.
  int typing_per_minute = 120;
  // `chat` frames per minute on one /ws/ai-chat connection, in place of `messages_per_minute`
  // there; the one past it closes the connection with 1008. <= 0 disables.
  int ai_chat_messages_per_minute = 100;
  // Engine.IO (Socket.IO's transport): heartbeat, payload size, upgrade and connect timeouts.
  engine_io::EngineIoOptions engine_io;
};

// Everything sessions share. Owned by EdgeServer, which outlives every session.
struct ServerContext {
  EdgeMetrics metrics;
  TurnTracker tracker;
  ConnectionRegistry connections;
  // HTTP connections not (yet) upgraded nor handed to a dialect or API: at shutdown an idle one is
  // closed, and one still sending its request (a WebSocket handshake) may finish it.
  ConnectionRegistry http_connections;
  // Socket.IO clients' Engine.IO sessions by sid, kept between their long-polling requests.
  EngineIoSessions engine_io_sessions;
  // Which connections view which conversation, for typing relay and live view.
  ConversationRooms rooms;
  // Carry rooms to the conversations' viewers on other edges; set with `persistence`, and
  // declared before it so that calls still finishing while the server is destroyed find it.
  std::unique_ptr<PersistenceRoomLinks> room_links;
  std::unique_ptr<PersistenceClient> persistence;
  std::unique_ptr<InferenceClient> inference;
  TurnDeps turn_deps;
  // Follow-up suggestions after a reply, for the dialects that show them; null when turned off.
  std::unique_ptr<Suggester> suggester;
  // Who may connect; never null once the server runs.
  std::unique_ptr<Authenticator> authenticator;
  OriginAllowList origins;
  // Per-user message rate and concurrent turns over all of a user's connections.
  std::unique_ptr<UserLimits> user_limits;
  ConnectionLimits limits;
  // Accepted WebSockets and open Engine.IO sessions right now, for `max_connections`.
  std::atomic<int> open_websockets{0};
  // Set on SIGTERM: readiness fails and no new turn starts.
  std::atomic<bool> draining{false};
  // --echo_path (its path points into `echo_path`); unset when the flag is empty.
  std::string echo_path;
  std::optional<Dialect> echo;
};

}  // namespace parley::edge
