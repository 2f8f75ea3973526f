#pragma once

#include "edge/protocol/codec.h"
#include "edge/protocol/dialect_session.h"

namespace parley::edge {

// Makes a stateless Codec a DialectSession: the chat opens with the connection (the route has
// authenticated the request), each text frame is one command and each event one frame.
class CodecSession final : public DialectSession {
 public:
  // `codec` outlives the session (dialect codecs are static).
  explicit CodecSession(const Codec& codec, ChatOptions options = {});

  void Open(DialectHost& host) override;
  void OnFrame(std::string_view frame, FrameType type) override;
  void Encode(const Event& event, Frames& frames) override;

 private:
  const Codec& codec_;
  const ChatOptions options_;
  Chat* chat_ = nullptr;
};

}  // namespace parley::edge
