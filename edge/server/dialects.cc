#include "edge/server/dialects.h"

#include "edge/protocol/codec_session.h"
#include "edge/protocol/native_codec.h"

namespace parley::edge {
namespace {

const NativeCodec kNativeCodec{};

const Dialect kDialects[] = {
    {
        .path = "/ws/chat",
        .label = "native",
        .subprotocol = NativeCodec::kSubprotocol,
        .tokens = {},
        .new_session = [](ServerContext&) -> std::unique_ptr<DialectSession> {
          return std::make_unique<CodecSession>(kNativeCodec);
        },
    },
};

}  // namespace

absl::Span<const Dialect> Dialects() { return kDialects; }

const Dialect* FindDialect(absl::string_view path) {
  for (const Dialect& dialect : kDialects) {
    if (dialect.path == path) {
      return &dialect;
    }
  }
  return nullptr;
}

}  // namespace parley::edge
