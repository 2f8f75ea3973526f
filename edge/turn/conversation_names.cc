#include "edge/turn/conversation_names.h"

#include <variant>

namespace parley::edge {

bool IsParleyConversationId(absl::string_view id) {
  if (id.size() != 32) {
    return false;
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

void RenameConversation(Event& event, const std::string& id) {
  std::visit(
      [&id](auto& named) {
        if constexpr (requires { named.conversation_id; }) {
          named.conversation_id = id;
        }
      },
      event);
}

}  // namespace parley::edge
