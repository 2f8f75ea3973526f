#pragma once

#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "edge/clients/persistence_client.h"
#include "edge/turn/conversation_rooms.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace parley::edge {

// Rooms across edge instances, through persistence, which every edge already shares: a stored
// conversation viewed here is followed once (WatchConversation), however many connections here
// view it. What a viewer here signals (typing, join, leave) goes out with PublishSignal, tagged
// with this edge's origin so its own copy is not shown twice (a typing signal only within its
// own short deadline: late, it is dropped); messages other edges store reach
// the room from their stored events, and a reply another edge streams is followed from storage
// (WatchMessage) to its end, which is also how a viewer here learns that the other edge died
// (persistence ends the reply once that edge's lease lapses). A watch whose persistence replica
// goes away is opened again, with back-off, on whichever replica the channel picks. A room of a
// client's name not stored yet is followed, and signalled, by that name, and becomes the stored
// conversation's room when its first message is stored, on whichever edge.
class PersistenceRoomLinks final : public RoomLinks {
 public:
  // `edge_id` names this edge process among all of them; `rooms` tells which messages this edge
  // shows its viewers itself, and moves a name's room into its stored conversation's once the
  // link learns it is stored. Everything outlives the links.
  PersistenceRoomLinks(PersistenceClient& persistence, boost::asio::any_io_executor executor,
                       ConversationRooms& rooms, prometheus::Registry& registry,
                       std::string edge_id);

  std::shared_ptr<RoomLink> Open(const std::string& user_id, const std::string& conversation_id,
                                 std::weak_ptr<ConversationRoom> room) override;

  // What every link shares.
  struct Deps {
    PersistenceClient& persistence;
    boost::asio::any_io_executor executor;
    ConversationRooms& rooms;
    // Prefix of the `origin` of every signal this edge publishes.
    std::string origin_prefix;
    prometheus::Gauge& watches;
    prometheus::Gauge& watches_ready;
    prometheus::Counter& watch_restarts;
    prometheus::Counter& signals_published;
    prometheus::Counter& signals_received;
    prometheus::Counter& signals_failed;
    // Typing signals not published within their deadline, refused by persistence as too old,
    // or received too late to show.
    prometheus::Counter& signals_expired;
  };

 private:
  // Declared before deps_, whose counters it holds.
  prometheus::Family<prometheus::Counter>& signals_;
  Deps deps_;
};

}  // namespace parley::edge
