#pragma once

#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "edge/clients/persistence_client.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/turn_tracker.h"

namespace parley::edge {

// The most messages a `history` frame returns (the newest ones).
inline constexpr int kHistoryPageSize = 200;

// Answers a `history` command: loads the conversation's newest messages and
// emits one History event (or an error) on `executor`. Registered in `tracker`
// until its answer is posted.
void LoadHistory(PersistenceClient& persistence, TurnTracker& tracker,
                 boost::asio::any_io_executor executor, std::weak_ptr<EventSink> sink,
                 std::string user_id, std::string conversation_id);

}  // namespace parley::edge
