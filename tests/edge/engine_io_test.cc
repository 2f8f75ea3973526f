#include "edge/protocol/engine_io.h"

#include <string>
#include <variant>
#include <vector>

#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "gtest/gtest.h"

namespace parley::edge::engine_io {
namespace {

namespace json = boost::json;

TEST(EngineIoTest, EncodesEachPacketTypeAsItsDigitFollowedByTheData) {
  EXPECT_EQ(EncodePacket({PacketType::kPing, ""}), "2");
  EXPECT_EQ(EncodePacket({PacketType::kPong, "probe"}), "3probe");
  EXPECT_EQ(EncodePacket({PacketType::kMessage, "40/chat,"}), "440/chat,");
  EXPECT_EQ(EncodePacket({PacketType::kNoop, ""}), "6");
  EXPECT_EQ(EncodePacket({PacketType::kClose, ""}), "1");
}

TEST(EngineIoTest, EncodesBinaryDataAsBase64AfterB) {
  EXPECT_EQ(EncodePacket({PacketType::kMessage, std::string("\x01\x02\x03\x04", 4), true}),
            "bAQIDBA==");
}

TEST(EngineIoTest, DecodesTheUpgradeHandshakePackets) {
  absl::StatusOr<Packet> probe = DecodePacket("2probe");
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->type, PacketType::kPing);
  EXPECT_EQ(probe->data, "probe");
  absl::StatusOr<Packet> upgrade = DecodePacket("5");
  ASSERT_TRUE(upgrade.ok()) << upgrade.status();
  EXPECT_EQ(upgrade->type, PacketType::kUpgrade);
  EXPECT_EQ(upgrade->data, "");
}

TEST(EngineIoTest, DecodesAMessageKeepingItsUtf8DataAsIs) {
  absl::StatusOr<Packet> message = DecodePacket("42/chat,[\"chat:send\",{\"content\":\"€ ☃\"}]");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->type, PacketType::kMessage);
  EXPECT_FALSE(message->binary);
  EXPECT_EQ(message->data, "2/chat,[\"chat:send\",{\"content\":\"€ ☃\"}]");
}

TEST(EngineIoTest, DecodesABase64PacketAsABinaryMessage) {
  absl::StatusOr<Packet> packet = DecodePacket("bAQIDBA==");
  ASSERT_TRUE(packet.ok()) << packet.status();
  EXPECT_EQ(packet->type, PacketType::kMessage);
  EXPECT_TRUE(packet->binary);
  EXPECT_EQ(packet->data, std::string("\x01\x02\x03\x04", 4));
}

TEST(EngineIoTest, RefusesEmptyUnknownAndBrokenPackets) {
  EXPECT_FALSE(DecodePacket("").ok());
  EXPECT_FALSE(DecodePacket("7").ok());
  EXPECT_FALSE(DecodePacket("abc").ok());
  EXPECT_FALSE(DecodePacket("b!!!not-base64").ok());
}

TEST(EngineIoTest, JoinsAPayloadWithTheRecordSeparator) {
  EXPECT_EQ(EncodePayload({{PacketType::kMessage, "hello"},
                           {PacketType::kPing, ""},
                           {PacketType::kMessage, "world"}}),
            "4hello\x1e"
            "2\x1e"
            "4world");
  EXPECT_EQ(EncodePayload({{PacketType::kNoop, ""}}), "6");
}

TEST(EngineIoTest, SplitsAPayloadIntoItsPackets) {
  absl::StatusOr<std::vector<Packet>> packets = DecodePayload(
      "42[\"hello\"]\x1e"
      "42[\"world\"]\x1e"
      "bAQIDBA==\x1e"
      "3");
  ASSERT_TRUE(packets.ok()) << packets.status();
  ASSERT_EQ(packets->size(), 4);
  EXPECT_EQ((*packets)[0], (Packet{PacketType::kMessage, "2[\"hello\"]"}));
  EXPECT_EQ((*packets)[1], (Packet{PacketType::kMessage, "2[\"world\"]"}));
  EXPECT_EQ((*packets)[2],
            (Packet{PacketType::kMessage, std::string("\x01\x02\x03\x04", 4), true}));
  EXPECT_EQ((*packets)[3], (Packet{PacketType::kPong, ""}));
}

TEST(EngineIoTest, APayloadWithOneBadPacketIsRefusedWhole) {
  EXPECT_FALSE(DecodePayload("4hello\x1e"
                             "abc")
                   .ok());
  // An empty record between two separators is an empty packet.
  EXPECT_FALSE(DecodePayload("4hello\x1e\x1e"
                             "4world")
                   .ok());
  EXPECT_FALSE(DecodePayload("").ok());
  // However the empty body is given: a default (null) view too.
  EXPECT_FALSE(DecodePayload(absl::string_view()).ok());
}

TEST(EngineIoTest, TheOpenPacketCarriesExactlyTheHandshakeFields) {
  Handshake handshake;
  handshake.sid = "lv_VI97HAXpY6yYWAAAC";
  handshake.upgrades = {"websocket"};
  const Packet open = OpenPacket(handshake);
  EXPECT_EQ(open.type, PacketType::kOpen);
  const json::value data = json::parse(open.data);
  EXPECT_EQ(data, json::parse(R"({"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],
                                  "pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000})"));
  EXPECT_EQ(EncodePacket(open).front(), '0');
}

TEST(EngineIoTest, AWebSocketSessionOffersNoUpgrades) {
  Handshake handshake;
  handshake.sid = "s";
  handshake.ping_interval_ms = 300;
  handshake.ping_timeout_ms = 200;
  const json::value data = json::parse(OpenPacket(handshake).data);
  EXPECT_TRUE(data.at("upgrades").as_array().empty());
  EXPECT_EQ(data.at("pingInterval"), 300);
  EXPECT_EQ(data.at("pingTimeout"), 200);
}

TEST(EngineIoTest, ErrorsAnswerAsEngineIoServersDo) {
  EXPECT_EQ(ErrorBody(ErrorCode::kUnknownSid), R"({"code":1,"message":"Session ID unknown"})");
  EXPECT_EQ(HttpStatus(ErrorCode::kUnknownSid), 400);
  EXPECT_EQ(ErrorBody(ErrorCode::kUnknownTransport), R"({"code":0,"message":"Transport unknown"})");
  EXPECT_EQ(ErrorBody(ErrorCode::kBadRequest), R"({"code":3,"message":"Bad request"})");
  EXPECT_EQ(HttpStatus(ErrorCode::kForbidden), 403);
}

TEST(EngineIoTest, ReadsTheTransportAndSidOfARequest) {
  auto handshake = ParseRequestTarget("/socket.io/?EIO=4&transport=polling&t=N8hyd6w");
  ASSERT_TRUE(std::holds_alternative<RequestParams>(handshake));
  EXPECT_EQ(std::get<RequestParams>(handshake).transport, Transport::kPolling);
  EXPECT_EQ(std::get<RequestParams>(handshake).sid, "");

  auto upgrade = ParseRequestTarget("/socket.io/?EIO=4&transport=websocket&sid=lv_VI97HAXpY6yY");
  ASSERT_TRUE(std::holds_alternative<RequestParams>(upgrade));
  EXPECT_EQ(std::get<RequestParams>(upgrade).transport, Transport::kWebSocket);
  EXPECT_EQ(std::get<RequestParams>(upgrade).sid, "lv_VI97HAXpY6yY");

  auto with_user = ParseRequestTarget("/socket.io/?userId=alice&EIO=4&transport=polling");
  EXPECT_TRUE(std::holds_alternative<RequestParams>(with_user));
}

TEST(EngineIoTest, RefusesAMissingOrOtherVersionAndAnUnknownTransport) {
  EXPECT_EQ(std::get<ErrorCode>(ParseRequestTarget("/socket.io/?transport=polling")),
            ErrorCode::kUnsupportedProtocolVersion);
  EXPECT_EQ(std::get<ErrorCode>(ParseRequestTarget("/socket.io/?EIO=3&transport=polling")),
            ErrorCode::kUnsupportedProtocolVersion);
  EXPECT_EQ(std::get<ErrorCode>(ParseRequestTarget("/socket.io/?EIO=abc&transport=polling")),
            ErrorCode::kUnsupportedProtocolVersion);
  EXPECT_EQ(std::get<ErrorCode>(ParseRequestTarget("/socket.io/?EIO=4")),
            ErrorCode::kUnknownTransport);
  EXPECT_EQ(std::get<ErrorCode>(ParseRequestTarget("/socket.io/?EIO=4&transport=flashsocket")),
            ErrorCode::kUnknownTransport);
  EXPECT_EQ(std::get<ErrorCode>(ParseRequestTarget("/socket.io/")),
            ErrorCode::kUnsupportedProtocolVersion);
}

}  // namespace
}  // namespace parley::edge::engine_io
