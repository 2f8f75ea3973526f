#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "edge/protocol/messages.h"

// Conversations a client names. Parley's own conversation ids are 32 lowercase hex digits; any
// other `conversationId` a client sends is a name that client gave one of its user's
// conversations (`"conv-123"`), created by its first message and reached by the same name from
// any connection, dialect or edge later. Names are per user. Every frame names a conversation
// the way the client it goes to named it.
namespace parley::edge {

bool IsParleyConversationId(absl::string_view id);

// A conversation id as a client sent it: empty, or not Parley's form, is no name.
inline bool IsClientConversationName(absl::string_view id) {
  return !id.empty() && !IsParleyConversationId(id);
}

// Makes every conversation id `event` carries `id`; events that name none are unchanged.
void RenameConversation(Event& event, const std::string& id);

}  // namespace parley::edge
