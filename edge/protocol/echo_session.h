#pragma once

#include "edge/protocol/dialect_session.h"

namespace parley::edge {

// Sends every message back as it came (text as text, binary as binary), and nothing else: the
// endpoint of --echo_path, so a WebSocket conformance suite (Autobahn|Testsuite) exercises the
// edge's own WebSocket transport — its stream options, limits and close handling — with no chat
// behind it.
class EchoSession final : public DialectSession {
 public:
  void Open(DialectHost& host) override { host_ = &host; }
  void OnFrame(std::string_view frame, FrameType type) override;
  // Never opens a chat, so no event ever comes.
  void Encode(const Event& /*event*/, Frames& /*frames*/) override {}
  void OnClosed() override { host_ = nullptr; }

 private:
  DialectHost* host_ = nullptr;
};

}  // namespace parley::edge
