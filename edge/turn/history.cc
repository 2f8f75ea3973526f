#include "edge/turn/history.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "edge/clients/persistence_names.h"

namespace parley::edge {
namespace {

Event ToEvent(const std::string& conversation_id,
              const absl::StatusOr<persistence_pb::ListMessagesResponse>& response) {
  if (!response.ok()) {
    if (response.status().code() == absl::StatusCode::kNotFound) {
      return ErrorEvent{ErrorCode::kNotFound, "no such conversation", ""};
    }
    return ErrorEvent{ErrorCode::kStorageUnavailable,
                      absl::StrCat("cannot load the conversation: ", response.status().message()),
                      ""};
  }
  History history;
  history.conversation_id = conversation_id;
  for (const persistence_pb::Message& message : response->messages()) {
    history.messages.push_back(HistoryMessage{message.id(), RoleName(message.role()),
                                              message.content(), StatusName(message.status())});
  }
  return history;
}

}  // namespace

void LoadHistory(PersistenceClient& persistence, TurnTracker& tracker,
                 boost::asio::any_io_executor executor, std::weak_ptr<EventSink> sink,
                 std::string user_id, std::string conversation_id) {
  persistence_pb::ListMessagesRequest request;
  request.set_user_id(std::move(user_id));
  request.set_conversation_id(conversation_id);
  request.set_page_size(kHistoryPageSize);
  request.set_newest(true);
  persistence.ListMessages(
      std::move(request), common::NewTraceContext(),
      [executor, sink = std::move(sink), conversation_id = std::move(conversation_id), &tracker,
       key = tracker.Add([] {})](absl::StatusOr<persistence_pb::ListMessagesResponse> response) {
        Event event = ToEvent(conversation_id, response);
        boost::asio::post(executor, [sink, event = std::move(event)]() mutable {
          if (std::shared_ptr<EventSink> target = sink.lock()) {
            target->Emit(std::move(event), std::nullopt);
          }
        });
        tracker.Remove(key);
      });
}

}  // namespace parley::edge
