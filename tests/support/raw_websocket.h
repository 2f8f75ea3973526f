#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace parley::testing {

// A TCP client that writes exactly the bytes a test gives it, for the cases a well-behaved
// WebSocket library refuses to produce: half-sent handshakes, unmasked or reserved frames,
// oversized control frames, broken UTF-8. Every read is bounded by a timeout.
class RawSocket {
 public:
  // Connects to "127.0.0.1:PORT".
  static absl::StatusOr<std::unique_ptr<RawSocket>> Connect(const std::string& address);
  ~RawSocket();
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  absl::Status Write(std::string_view bytes);
  // Exactly `size` bytes; Unavailable when the peer closes first, DeadlineExceeded on timeout.
  absl::StatusOr<std::string> ReadExactly(size_t size, absl::Duration timeout = absl::Seconds(10));
  // An HTTP response's status line and headers, up to and including the blank line.
  absl::StatusOr<std::string> ReadHttpHead(absl::Duration timeout = absl::Seconds(10));
  // True when the peer closed the connection (end of stream or reset) within `timeout`;
  // whatever it still sent before is discarded.
  bool WaitForClose(absl::Duration timeout = absl::Seconds(10));

 private:
  explicit RawSocket(int fd) : fd_(fd) {}
  // Waits until the socket is readable; false on timeout.
  bool WaitReadable(absl::Duration timeout);

  const int fd_;
  std::string pending_;  // Read but not yet returned.
};

// An upgrade request for `target` with a fixed key, and `extra_headers` ("Name: value") added.
std::string UpgradeRequest(const std::string& target,
                           const std::vector<std::string>& extra_headers = {});

// Connects and completes the WebSocket handshake for `target`; fails unless the answer is 101.
absl::StatusOr<std::unique_ptr<RawSocket>> OpenRawWebSocket(
    const std::string& address, const std::string& target,
    const std::vector<std::string>& extra_headers = {});

namespace ws_opcode {
inline constexpr uint8_t kContinuation = 0x0;
inline constexpr uint8_t kText = 0x1;
inline constexpr uint8_t kBinary = 0x2;
inline constexpr uint8_t kClose = 0x8;
inline constexpr uint8_t kPing = 0x9;
inline constexpr uint8_t kPong = 0xA;
}  // namespace ws_opcode

struct FrameOptions {
  bool fin = true;
  bool masked = true;
  uint8_t rsv = 0;  // RSV1..RSV3 as the low three bits (0b100 is RSV1).
};

// One frame as a client sends it (masked unless told otherwise).
std::string EncodeFrame(uint8_t opcode, std::string_view payload, FrameOptions options = {});
// A close frame's payload: the code, big-endian, then `reason`.
std::string ClosePayload(uint16_t code, std::string_view reason = "");

struct WsFrame {
  bool fin = true;
  uint8_t opcode = 0;
  std::string payload;
};

// The next frame the server sends (servers never mask).
absl::StatusOr<WsFrame> ReadFrame(RawSocket& socket, absl::Duration timeout = absl::Seconds(10));

// The next whole message: its first frame's opcode and every fragment's payload, answering
// nothing and skipping the control frames between fragments. A close frame ends it with an error.
absl::StatusOr<WsFrame> ReadMessage(RawSocket& socket, absl::Duration timeout = absl::Seconds(10));

// Reads frames until the server's close frame and returns its status code (1005 when the close
// frame carries none); skips data and ping frames before it. An error when the connection ends
// or the timeout passes before a close frame.
absl::StatusOr<int> ReadCloseCode(RawSocket& socket, absl::Duration timeout = absl::Seconds(10));

}  // namespace parley::testing
