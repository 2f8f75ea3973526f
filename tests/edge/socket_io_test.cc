#include "edge/protocol/socket_io.h"

#include <string>

#include "boost/json/parse.hpp"
#include "gtest/gtest.h"

namespace parley::edge::socket_io {
namespace {

namespace json = boost::json;

Packet DecodeOk(const std::string& text) {
  absl::StatusOr<Packet> packet = Decode(text);
  if (!packet.ok()) {
    ADD_FAILURE() << text << " -> " << packet.status();
    return {};
  }
  return *packet;
}

TEST(SocketIoTest, DecodesANamespaceConnectWithoutAndWithAuth) {
  const Packet bare = DecodeOk("0/chat,");
  EXPECT_EQ(bare.type, PacketType::kConnect);
  EXPECT_EQ(bare.nsp, "/chat");
  EXPECT_FALSE(bare.id.has_value());
  EXPECT_FALSE(bare.data.has_value());

  const Packet with_auth = DecodeOk(R"(0/chat,{"token":"abc.def.ghi"})");
  EXPECT_EQ(with_auth.nsp, "/chat");
  ASSERT_TRUE(with_auth.data.has_value());
  EXPECT_EQ(with_auth.data->at("token"), "abc.def.ghi");

  // A namespace may also run to the end of the packet, and the main one is not written.
  EXPECT_EQ(DecodeOk("0/chat").nsp, "/chat");
  EXPECT_EQ(DecodeOk("0").nsp, "/");
  EXPECT_EQ(DecodeOk(R"(0{"token":"t"})").nsp, "/");
}

TEST(SocketIoTest, DecodesAnEventWithAndWithoutAnAckId) {
  const Packet plain = DecodeOk(R"(2/chat,["chat:join",{"conversationId":"conv-123"}])");
  EXPECT_EQ(plain.type, PacketType::kEvent);
  EXPECT_FALSE(plain.id.has_value());
  EXPECT_EQ(plain.data->as_array().at(0), "chat:join");

  const Packet acked = DecodeOk(R"(2/chat,12["chat:send",{"content":"hi"}])");
  ASSERT_TRUE(acked.id.has_value());
  EXPECT_EQ(*acked.id, 12u);
  EXPECT_EQ(acked.data->as_array().at(1).at("content"), "hi");

  const Packet main_namespace = DecodeOk(R"(2456["message-with-ack",1,"2",{"3":[false]}])");
  EXPECT_EQ(main_namespace.nsp, "/");
  EXPECT_EQ(*main_namespace.id, 456u);
}

TEST(SocketIoTest, DecodesADisconnect) {
  const Packet disconnect = DecodeOk("1/chat,");
  EXPECT_EQ(disconnect.type, PacketType::kDisconnect);
  EXPECT_EQ(disconnect.nsp, "/chat");
}

TEST(SocketIoTest, RefusesBinaryPacketsSayingWhy) {
  for (const std::string text : {R"(51-["baz",{"_placeholder":true,"num":0}])",
                                 R"(61-/chat,15["bar",{"_placeholder":true,"num":0}])"}) {
    absl::StatusOr<Packet> packet = Decode(text);
    ASSERT_FALSE(packet.ok()) << text;
    EXPECT_NE(packet.status().message().find("binary"), std::string::npos) << packet.status();
  }
}

TEST(SocketIoTest, RefusesPacketsOfTheWrongShape) {
  EXPECT_FALSE(Decode("").ok());
  EXPECT_FALSE(Decode("9").ok());
  EXPECT_FALSE(Decode("abc").ok());
  // An EVENT needs a non-empty array that starts with a name.
  EXPECT_FALSE(Decode("2{}").ok());
  EXPECT_FALSE(Decode("2[]").ok());
  EXPECT_FALSE(Decode("2/chat,").ok());
  EXPECT_FALSE(Decode(R"(2[{"a":1}])").ok());
  EXPECT_FALSE(Decode(R"(2/chat,["connect"])").ok());
  // A bad ack id leaves text that is not JSON.
  EXPECT_FALSE(Decode(R"(2abc["message-with-ack",1])").ok());
  EXPECT_FALSE(Decode(R"(2/chat,99999999999999999["x"])").ok());
  // A CONNECT payload is an object, a DISCONNECT has none, an ACK carries an array.
  EXPECT_FALSE(Decode(R"(0/chat,"token")").ok());
  EXPECT_FALSE(Decode(R"(1/chat,{})").ok());
  EXPECT_FALSE(Decode(R"(3/chat,1{})").ok());
  // Trailing bytes after the JSON.
  EXPECT_FALSE(Decode(R"(2/chat,["x"]junk)").ok());
}

TEST(SocketIoTest, EncodesPacketsAsTheSocketIoParserWritesThem) {
  Packet connect;
  connect.type = PacketType::kConnect;
  connect.nsp = "/chat";
  connect.data = json::object{{"sid", "oSO0OpakMV_3jnilAAAA"}};
  EXPECT_EQ(Encode(connect), R"(0/chat,{"sid":"oSO0OpakMV_3jnilAAAA"})");

  Packet ack;
  ack.type = PacketType::kAck;
  ack.nsp = "/chat";
  ack.id = 13;
  ack.data = json::array{"bar"};
  EXPECT_EQ(Encode(ack), R"(3/chat,13["bar"])");

  Packet disconnect;
  disconnect.type = PacketType::kDisconnect;
  disconnect.nsp = "/chat";
  EXPECT_EQ(Encode(disconnect), "1/chat,");

  Packet main_event;
  main_event.data = json::array{"foo"};
  EXPECT_EQ(Encode(main_event), R"(2["foo"])");
}

// Boost.JSON reads these as infinity, which would go back out as `Infinity` (not JSON). Found by
// fuzz_socket_io_packet (tests/fuzz/socket_io_packet/regressions/crash-9f3bca0a…).
TEST(SocketIoTest, RefusesNumbersPastADoublesRange) {
  for (const char* text : {"3[26666e110099547]", R"(2["chat:message",{"n":1e400}])",
                           R"(2["x",[[-1e309]]])", R"(0/chat,{"token":"t","v":2e308})"}) {
    absl::StatusOr<Packet> packet = Decode(text);
    ASSERT_FALSE(packet.ok()) << text;
    EXPECT_EQ(packet.status().message(),
              "a Socket.IO packet payload holds a number out of range (past a double's)");
  }
  // The largest double is still a number.
  EXPECT_TRUE(Decode(R"(2["x",1.7976931348623157e308,-1e-400])").ok());
}

TEST(SocketIoTest, AnEncodedEventDecodesToTheSamePacket) {
  Packet event;
  event.nsp = "/chat";
  event.id = 7;
  event.data = json::parse(R"(["chat:streaming",{"chunk":"a\u001eb \"q\" ☃","isComplete":false}])");
  const std::string text = Encode(event);
  // JSON escapes control characters, so a packet never holds the polling record separator.
  EXPECT_EQ(text.find('\x1e'), std::string::npos) << text;
  const Packet decoded = DecodeOk(text);
  EXPECT_EQ(decoded.nsp, "/chat");
  EXPECT_EQ(decoded.id, 7u);
  EXPECT_EQ(decoded.data, event.data);
}

}  // namespace
}  // namespace parley::edge::socket_io
