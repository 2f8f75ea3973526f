#pragma once

#include <string_view>

namespace parley::edge {

// The chat page (edge/web/index.html), embedded at build time.
extern const std::string_view kChatPage;

}  // namespace parley::edge
