#include "edge/turn/history.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "edge/clients/persistence_names.h"
#include "edge/turn/conversation_names.h"

namespace parley::edge {
namespace {

ErrorEvent ReadError(const absl::Status& status, absl::string_view what) {
  if (status.code() == absl::StatusCode::kNotFound) {
    return ErrorEvent{ErrorCode::kNotFound, absl::StrCat("no such ", what), ""};
  }
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    return ErrorEvent{ErrorCode::kInvalidFrame, std::string(status.message()), ""};
  }
  return ErrorEvent{ErrorCode::kStorageUnavailable,
                    absl::StrCat("cannot load the ", what, ": ", status.message()), ""};
}

// A callback for a persistence read that turns its response into one event for the client.
template <class Response, class ToEvent>
auto AnswerWith(ReadAnswer answer, ToEvent to_event) {
  const uint64_t key = answer.tracker.Add([] {});
  return [answer = std::move(answer), to_event = std::move(to_event),
          key](absl::StatusOr<Response> response) mutable {
    Event event = to_event(response);
    boost::asio::post(answer.executor, [sink = answer.sink, event = std::move(event)]() mutable {
      if (std::shared_ptr<EventSink> target = sink.lock()) {
        target->Emit(std::move(event), std::nullopt);
      }
    });
    answer.tracker.Remove(key);
  };
}

std::vector<HistoryMessage> ToHistoryMessages(const persistence_pb::ListMessagesResponse& page) {
  std::vector<HistoryMessage> messages;
  messages.reserve(page.messages_size());
  for (const persistence_pb::Message& message : page.messages()) {
    messages.push_back(ToHistoryMessage(message));
  }
  return messages;
}

}  // namespace

HistoryMessage ToHistoryMessage(const persistence_pb::Message& message) {
  return HistoryMessage{
      .id = message.id(),
      .role = RoleName(message.role()),
      .content = message.content(),
      .status = StatusName(message.status()),
      .parent_id = message.parent_id(),
      .model = message.model(),
      .finish_reason = message.finish_reason(),
      .last_seq = message.last_seq(),
      .created_at = Rfc3339(message.create_time()),
      .sha256 = message.sha256(),
  };
}

ConversationSummary ToConversationSummary(const persistence_pb::Conversation& conversation) {
  return ConversationSummary{
      .id = conversation.id(),
      .title = conversation.title(),
      .created_at = Rfc3339(conversation.create_time()),
      .updated_at = Rfc3339(conversation.update_time()),
      .client_conversation_id = conversation.client_conversation_id(),
  };
}

namespace {

// Calls `then` with the stored id of the conversation the client calls `conversation_id` (itself
// for a Parley id), or answers the read with the error.
void FindConversation(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                      std::string conversation_id,
                      std::function<void(ReadAnswer, std::string stored_id)> then) {
  if (!IsClientConversationName(conversation_id)) {
    return then(std::move(answer), std::move(conversation_id));
  }
  persistence_pb::GetConversationRequest request;
  request.set_user_id(std::move(user_id));
  request.set_client_conversation_id(conversation_id);
  const uint64_t key = answer.tracker.Add([] {});
  persistence.GetConversation(
      std::move(request), common::NewTraceContext(),
      [answer, then = std::move(then),
       key](absl::StatusOr<persistence_pb::GetConversationResponse> response) mutable {
        if (response.ok()) {
          then(answer, response->conversation().id());
        } else {
          boost::asio::post(
              answer.executor,
              [sink = answer.sink, error = ReadError(response.status(), "conversation")]() mutable {
                if (std::shared_ptr<EventSink> target = sink.lock()) {
                  target->Emit(std::move(error), std::nullopt);
                }
              });
        }
        answer.tracker.Remove(key);
      });
}

}  // namespace

void LoadHistory(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                 std::string conversation_id) {
  FindConversation(
      persistence, std::move(answer), user_id, conversation_id,
      [&persistence, user_id, conversation_id](ReadAnswer answer, std::string stored_id) {
        persistence_pb::ListMessagesRequest request;
        request.set_user_id(user_id);
        request.set_conversation_id(std::move(stored_id));
        request.set_page_size(kHistoryPageSize);
        request.set_newest(true);
        persistence.ListMessages(
            std::move(request), common::NewTraceContext(),
            AnswerWith<persistence_pb::ListMessagesResponse>(
                std::move(answer),
                [conversation_id](
                    const absl::StatusOr<persistence_pb::ListMessagesResponse>& response) -> Event {
                  if (!response.ok()) {
                    return ReadError(response.status(), "conversation");
                  }
                  return History{conversation_id, ToHistoryMessages(*response)};
                }));
      });
}

void LoadMessagePage(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                     ListMessages list) {
  std::string conversation_id = list.conversation_id;
  FindConversation(
      persistence, std::move(answer), user_id, std::move(conversation_id),
      [&persistence, user_id, list = std::move(list)](ReadAnswer answer,
                                                      std::string stored_id) mutable {
        persistence_pb::ListMessagesRequest request;
        request.set_user_id(user_id);
        request.set_conversation_id(std::move(stored_id));
        request.set_page_size(list.page_size);
        request.set_page_token(std::move(list.page_token));
        request.set_leaf_message_id(std::move(list.leaf_message_id));
        persistence.ListMessages(
            std::move(request), common::NewTraceContext(),
            AnswerWith<persistence_pb::ListMessagesResponse>(
                std::move(answer),
                [conversation_id = std::move(list.conversation_id)](
                    const absl::StatusOr<persistence_pb::ListMessagesResponse>& response) -> Event {
                  if (!response.ok()) {
                    return ReadError(response.status(), "conversation");
                  }
                  return MessagePage{conversation_id, ToHistoryMessages(*response),
                                     response->next_page_token()};
                }));
      });
}

void LoadConversationPage(PersistenceClient& persistence, ReadAnswer answer, std::string user_id,
                          ListConversations list) {
  persistence_pb::ListConversationsRequest request;
  request.set_user_id(std::move(user_id));
  request.set_page_size(list.page_size);
  request.set_page_token(std::move(list.page_token));
  persistence.ListConversations(
      std::move(request), common::NewTraceContext(),
      AnswerWith<persistence_pb::ListConversationsResponse>(
          std::move(answer),
          [](const absl::StatusOr<persistence_pb::ListConversationsResponse>& response) -> Event {
            if (!response.ok()) {
              return ReadError(response.status(), "conversations");
            }
            ConversationPage page;
            page.next_page_token = response->next_page_token();
            for (const persistence_pb::Conversation& conversation : response->conversations()) {
              page.conversations.push_back(ToConversationSummary(conversation));
            }
            return page;
          }));
}

}  // namespace parley::edge
