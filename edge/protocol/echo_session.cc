#include "edge/protocol/echo_session.h"

#include <string>

namespace parley::edge {

void EchoSession::OnFrame(std::string_view frame, FrameType type) {
  if (host_ == nullptr) {
    return;
  }
  if (type == FrameType::kBinary) {
    host_->SendBinary(std::string(frame));
  } else {
    host_->Send(std::string(frame));
  }
}

}  // namespace parley::edge
