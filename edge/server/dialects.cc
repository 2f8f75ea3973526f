#include "edge/server/dialects.h"

#include "edge/protocol/agent_session.h"
#include "edge/protocol/ai_chat_session.h"
#include "edge/protocol/codec_session.h"
#include "edge/protocol/copilot_session.h"
#include "edge/protocol/echo_session.h"
#include "edge/protocol/native_codec.h"
#include "edge/protocol/socket_io_session.h"
#include "edge/server/engine_io_session.h"
#include "edge/server/event_stream_transport.h"
#include "edge/server/server_context.h"

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
    {
        // A web app's copilot hook: docs/dialects/copilot.md.
        .path = "/copilot",
        .label = "copilot",
        .subprotocol = "",
        .tokens = {},
        .new_session = [](ServerContext& context) -> std::unique_ptr<DialectSession> {
          return std::make_unique<CopilotSession>(context.suggester.get());
        },
    },
    {
        // A ChatGPT-style page: docs/dialects/ai-chat.md.
        .path = "/ws/ai-chat",
        .label = "ai_chat",
        .subprotocol = "",
        .tokens = {},
        .new_session = [](ServerContext& context) -> std::unique_ptr<DialectSession> {
          return std::make_unique<AiChatSession>(context.limits.ai_chat_messages_per_minute);
        },
    },
    {
        // A data-analysis agent's page, one question per connection: docs/dialects/agent.md.
        .path = "/ws/agent/stream",
        .label = "agent",
        .subprotocol = "",
        .tokens = {},
        .new_session = [](ServerContext&) -> std::unique_ptr<DialectSession> {
          return std::make_unique<AgentSession>(AgentSession::Transport::kWebSocket);
        },
    },
    {
        // Its Server-Sent Events twin, which EventSource reconnects with Last-Event-ID.
        .path = "/agent/stream",
        .label = "agent",
        .subprotocol = "",
        .tokens = {},
        .new_session = nullptr,
        .serve_http = ServeAgentEventStream,
    },
    {
        // Socket.IO v4 (Engine.IO v4 long-polling and WebSocket), namespace /chat.
        .path = "/socket.io/",
        .label = "socketio",
        .subprotocol = "",
        .tokens = {.authorization_header = true,
                   .subprotocol = false,
                   .query_parameter = true,
                   .connect_packet = true},
        .new_session = [](ServerContext& context) -> std::unique_ptr<DialectSession> {
          return std::make_unique<SocketIoSession>(context.limits.engine_io);
        },
        .serve_http = ServeEngineIo,
        .serve_http_upgrade = TakesEngineIoUpgrade,
    },
};

}  // namespace

absl::Span<const Dialect> Dialects() { return kDialects; }

Dialect EchoDialect(absl::string_view path) {
  return Dialect{
      .path = path,
      .label = "echo",
      .subprotocol = "",
      .tokens = {},
      .new_session = [](ServerContext&) -> std::unique_ptr<DialectSession> {
        return std::make_unique<EchoSession>();
      },
  };
}

const Dialect* FindDialect(absl::string_view path) {
  for (const Dialect& dialect : kDialects) {
    if (dialect.path == path) {
      return &dialect;
    }
  }
  return nullptr;
}

}  // namespace parley::edge
