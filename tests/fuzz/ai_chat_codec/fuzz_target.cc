// The ChatGPT-style page's frames (/ws/ai-chat, seed 002): decoded, and a decoded chat message's
// text streamed back through the encoder (which sanitises it).

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "edge/protocol/ai_chat_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace ai_chat = parley::edge::ai_chat;
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  std::variant<parley::edge::Command, parley::edge::ErrorEvent> decoded =
      ai_chat::DecodeFrame(frame);
  auto* command = std::get_if<parley::edge::Command>(&decoded);
  if (command == nullptr) {
    return 0;
  }
  if (const auto* send = std::get_if<parley::edge::SendMessage>(command)) {
    ai_chat::AiChatEncoder encoder;
    encoder.Encode(parley::edge::StreamStart{"c1", "m1", send->model, ""});
    // The text in two pieces, split where a sanitiser's lookahead would have to carry over.
    const size_t half = send->content.size() / 2;
    encoder.Encode(parley::edge::StreamToken{"m1", 1, send->content.substr(0, half)});
    encoder.Encode(parley::edge::StreamToken{"m1", 2, send->content.substr(half)});
    encoder.Encode(parley::edge::StreamComplete{"m1", 2, "stop", 0, 2, send->model, ""});
  }
  return 0;
}
