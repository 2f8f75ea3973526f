#include "edge/protocol/codec_session.h"

#include <utility>
#include <variant>

namespace parley::edge {

CodecSession::CodecSession(const Codec& codec, ChatOptions options)
    : codec_(codec), options_(std::move(options)) {}

void CodecSession::Open(DialectHost& host) {
  // A codec dialect has no protocol of its own to authenticate in, so its route did.
  chat_ = &host.OpenChat(*host.request().user, options_);
}

void CodecSession::OnFrame(std::string_view frame, FrameType type) {
  if (type != FrameType::kText) {
    return chat_->Reject(
        ErrorEvent{ErrorCode::kInvalidFrame, "binary frames are not supported", ""});
  }
  std::variant<Command, ErrorEvent> decoded = codec_.Decode(frame);
  if (ErrorEvent* error = std::get_if<ErrorEvent>(&decoded)) {
    return chat_->Reject(std::move(*error));
  }
  chat_->Handle(std::get<Command>(std::move(decoded)));
}

void CodecSession::Encode(const Event& event, Frames& frames) {
  std::string frame = codec_.Encode(event);
  // A codec answers an event its dialect does not show with no frame.
  if (!frame.empty()) {
    frames.push_back(std::move(frame));
  }
}

}  // namespace parley::edge
