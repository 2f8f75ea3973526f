#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "common/trace_context.h"
#include "edge/clients/persistence_client.h"
#include "edge/protocol/messages.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/turn_tracker.h"

namespace parley::edge {

// Sends a client the part of a reply it has not seen, from persistence: the stored deltas after
// `after_seq`, then the live remainder as it becomes durable (whichever edge instance is
// generating it), then how it ended (stream_complete, stream_cancelled or stream_interrupted).
// Persistence may merge several deltas into one; such a stream_token carries the last seq it
// covers. With `announce`, a `resumed` event comes first, `recovered:false` when the message
// is unknown or not the user's. Runs on `executor`; registered in `tracker` until done.
// How a client hears that a reply ended, from persistence's record of the end: `last_seq_sent` and
// `text` are what it was sent of the reply (`text` is stream_interrupted's partialResponse).
Event ReplyEnd(const std::string& message_id, const persistence_pb::WatchFinish& finish,
               int64_t last_seq_sent, std::string text);

void ResumeReply(PersistenceClient& persistence, TurnTracker& tracker,
                 boost::asio::any_io_executor executor, std::weak_ptr<EventSink> sink,
                 std::string user_id, std::string message_id, int64_t after_seq, bool announce,
                 common::TraceContext trace = common::NewTraceContext());

}  // namespace parley::edge
