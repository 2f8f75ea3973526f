// The copilot dialect's frames (/copilot, seed 001): decoded, and a decoded message is answered
// through the encoder with its own text and ids.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "edge/protocol/copilot_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace copilot = parley::edge::copilot;
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  std::variant<copilot::CopilotRequest, parley::edge::ErrorEvent> decoded =
      copilot::DecodeFrame(frame);
  if (auto* request = std::get_if<copilot::CopilotRequest>(&decoded)) {
    const parley::edge::SendMessage& message = request->message;
    copilot::CopilotEncoder encoder;
    encoder.Expect(message.id, request->streaming, message.content);
    encoder.Encode(parley::edge::Ack{message.id, message.conversation_id, "m1", ""}, 0);
    encoder.Encode(parley::edge::StreamStart{message.conversation_id, "m1", message.model, ""}, 0);
    encoder.Encode(parley::edge::StreamToken{"m1", 1, message.content}, 0);
    encoder.Encode(parley::edge::StreamComplete{"m1", 1, "stop", 0, 1, message.model, ""}, 0);
  }
  return 0;
}
