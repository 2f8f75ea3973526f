#pragma once

#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "edge/clients/persistence_client.h"
#include "edge/protocol/messages.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/turn_tracker.h"

namespace parley::edge {

// The most messages a `history` frame returns (the newest ones).
inline constexpr int kHistoryPageSize = 200;

// Stored records as the client protocol names them.
HistoryMessage ToHistoryMessage(const persistence_pb::Message& message);
ConversationSummary ToConversationSummary(const persistence_pb::Conversation& conversation);

// Where a read's answer goes: emitted on `executor` to `sink`, if the connection still exists.
// Each read is registered in `tracker` until its answer is posted, so shutdown waits for it.
struct ReadAnswer {
  TurnTracker& tracker;
  boost::asio::any_io_executor executor;
  std::weak_ptr<EventSink> sink;
};

// `history {conversationId}`: the conversation's newest messages as one History event.
void LoadHistory(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                 std::string conversation_id);

// `messages`: one page of a conversation's messages, or the branch ending at a leaf.
void LoadMessagePage(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                     ListMessages list);

// `history` without a conversation: one page of the user's conversations, newest first.
void LoadConversationPage(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                          ListConversations list);

}  // namespace parley::edge
