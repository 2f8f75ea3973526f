// The native protocol's frames (/ws/chat, also what seed 000's app sends): any text a client
// sends is decoded, and what it named is echoed back through the encoder as the server would.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "edge/protocol/native_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const parley::edge::NativeCodec codec;
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  std::variant<parley::edge::Command, parley::edge::ErrorEvent> decoded = codec.Decode(frame);
  if (auto* error = std::get_if<parley::edge::ErrorEvent>(&decoded)) {
    codec.Encode(*error);
    return 0;
  }
  const parley::edge::Command& command = std::get<parley::edge::Command>(decoded);
  parley::edge::CommandName(command);
  if (const auto* send = std::get_if<parley::edge::SendMessage>(&command)) {
    codec.Encode(parley::edge::Ack{send->id, send->conversation_id, send->parent_id, ""});
    codec.Encode(parley::edge::StreamToken{send->id, 1, send->content});
  }
  return 0;
}
