#include "tests/support/raw_websocket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace parley::testing {

absl::StatusOr<std::unique_ptr<RawSocket>> RawSocket::Connect(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got ", address));
  }
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &peer.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", address));
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&peer), sizeof(peer)) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", address, ": ", std::strerror(error)));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return std::unique_ptr<RawSocket>(new RawSocket(fd));
}

RawSocket::~RawSocket() { ::close(fd_); }

absl::Status RawSocket::Write(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

bool RawSocket::WaitReadable(absl::Duration timeout) {
  pollfd entry{fd_, POLLIN, 0};
  const int ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
  while (true) {
    const int ready = ::poll(&entry, 1, ms < 0 ? 0 : ms);
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    return ready > 0;
  }
}

absl::StatusOr<std::string> RawSocket::ReadExactly(size_t size, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (pending_.size() < size) {
    if (!WaitReadable(deadline - absl::Now())) {
      return absl::DeadlineExceededError(
          absl::StrCat("waited for ", size, " bytes, got ", pending_.size()));
    }
    char chunk[16384];
    const ssize_t got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      return absl::UnavailableError(
          absl::StrCat("connection ended after ", pending_.size(), " of ", size, " bytes"));
    }
    pending_.append(chunk, static_cast<size_t>(got));
  }
  std::string out = pending_.substr(0, size);
  pending_.erase(0, size);
  return out;
}

absl::StatusOr<std::string> RawSocket::ReadHttpHead(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string head;
  while (!absl::EndsWith(head, "\r\n\r\n")) {
    absl::StatusOr<std::string> byte = ReadExactly(1, deadline - absl::Now());
    if (!byte.ok()) {
      return absl::Status(byte.status().code(),
                          absl::StrCat(byte.status().message(), " (head so far: ", head, ")"));
    }
    head += *byte;
  }
  return head;
}

bool RawSocket::WaitForClose(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  pending_.clear();
  while (WaitReadable(deadline - absl::Now())) {
    char chunk[16384];
    const ssize_t got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      return true;
    }
  }
  return false;
}

std::string UpgradeRequest(const std::string& target,
                           const std::vector<std::string>& extra_headers) {
  std::string request = absl::StrCat("GET ", target,
                                     " HTTP/1.1\r\n"
                                     "Host: 127.0.0.1\r\n"
                                     "Upgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     "Sec-WebSocket-Version: 13\r\n");
  for (const std::string& header : extra_headers) {
    absl::StrAppend(&request, header, "\r\n");
  }
  absl::StrAppend(&request, "\r\n");
  return request;
}

absl::StatusOr<std::unique_ptr<RawSocket>> OpenRawWebSocket(
    const std::string& address, const std::string& target,
    const std::vector<std::string>& extra_headers) {
  absl::StatusOr<std::unique_ptr<RawSocket>> socket = RawSocket::Connect(address);
  if (!socket.ok()) {
    return socket.status();
  }
  if (absl::Status written = (*socket)->Write(UpgradeRequest(target, extra_headers));
      !written.ok()) {
    return written;
  }
  absl::StatusOr<std::string> head = (*socket)->ReadHttpHead();
  if (!head.ok()) {
    return head.status();
  }
  if (!absl::StartsWith(*head, "HTTP/1.1 101")) {
    return absl::FailedPreconditionError(absl::StrCat("no upgrade: ", *head));
  }
  return socket;
}

std::string EncodeFrame(uint8_t opcode, std::string_view payload, FrameOptions options) {
  std::string frame;
  frame +=
      static_cast<char>((options.fin ? 0x80 : 0) | ((options.rsv & 0x7) << 4) | (opcode & 0x0F));
  const uint8_t mask_bit = options.masked ? 0x80 : 0;
  if (payload.size() < 126) {
    frame += static_cast<char>(mask_bit | payload.size());
  } else if (payload.size() <= 0xFFFF) {
    frame += static_cast<char>(mask_bit | 126);
    frame += static_cast<char>((payload.size() >> 8) & 0xFF);
    frame += static_cast<char>(payload.size() & 0xFF);
  } else {
    frame += static_cast<char>(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) {
      frame += static_cast<char>((static_cast<uint64_t>(payload.size()) >> shift) & 0xFF);
    }
  }
  if (!options.masked) {
    frame.append(payload);
    return frame;
  }
  const char key[4] = {'\x12', '\x34', '\x56', '\x78'};
  frame.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) {
    frame += static_cast<char>(payload[i] ^ key[i % 4]);
  }
  return frame;
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  std::string payload;
  payload += static_cast<char>(code >> 8);
  payload += static_cast<char>(code & 0xFF);
  payload.append(reason);
  return payload;
}

absl::StatusOr<WsFrame> ReadFrame(RawSocket& socket, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<std::string> head = socket.ReadExactly(2, timeout);
  if (!head.ok()) {
    return head.status();
  }
  WsFrame frame;
  const auto byte0 = static_cast<uint8_t>((*head)[0]);
  const auto byte1 = static_cast<uint8_t>((*head)[1]);
  frame.fin = (byte0 & 0x80) != 0;
  frame.opcode = byte0 & 0x0F;
  uint64_t size = byte1 & 0x7F;
  if (size >= 126) {
    absl::StatusOr<std::string> extended =
        socket.ReadExactly(size == 126 ? 2 : 8, deadline - absl::Now());
    if (!extended.ok()) {
      return extended.status();
    }
    size = 0;
    for (char c : *extended) {
      size = (size << 8) | static_cast<uint8_t>(c);
    }
  }
  if ((byte1 & 0x80) != 0) {
    return absl::DataLossError("the server masked a frame");
  }
  absl::StatusOr<std::string> payload = socket.ReadExactly(size, deadline - absl::Now());
  if (!payload.ok()) {
    return payload.status();
  }
  frame.payload = *std::move(payload);
  return frame;
}

absl::StatusOr<WsFrame> ReadMessage(RawSocket& socket, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  WsFrame message;
  bool started = false;
  while (true) {
    absl::StatusOr<WsFrame> frame = ReadFrame(socket, deadline - absl::Now());
    if (!frame.ok()) {
      return frame.status();
    }
    if (frame->opcode == ws_opcode::kClose) {
      return absl::FailedPreconditionError("the server closed the connection");
    }
    if (frame->opcode == ws_opcode::kPing || frame->opcode == ws_opcode::kPong) {
      continue;
    }
    if (!started) {
      message.opcode = frame->opcode;
      started = true;
    }
    message.payload += frame->payload;
    if (frame->fin) {
      return message;
    }
  }
}

absl::StatusOr<int> ReadCloseCode(RawSocket& socket, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<WsFrame> frame = ReadFrame(socket, deadline - absl::Now());
    if (!frame.ok()) {
      return frame.status();
    }
    if (frame->opcode != ws_opcode::kClose) {
      continue;
    }
    if (frame->payload.size() < 2) {
      return 1005;
    }
    return (static_cast<uint8_t>(frame->payload[0]) << 8) | static_cast<uint8_t>(frame->payload[1]);
  }
}

}  // namespace parley::testing
