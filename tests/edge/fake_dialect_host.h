#pragma once

#include <string>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "edge/protocol/dialect_session.h"

namespace parley::edge::testing {

// The chat a dialect session drives, recording what it was asked.
class FakeChat final : public Chat {
 public:
  explicit FakeChat(ChatUser user) : user_(std::move(user)) {}

  void Handle(Command command) override { commands.push_back(std::move(command)); }
  void Reject(ErrorEvent error) override { rejected.push_back(std::move(error)); }
  const ChatUser& user() const override { return user_; }

  std::vector<Command> commands;
  std::vector<ErrorEvent> rejected;

 private:
  ChatUser user_;
};

// A transport as a dialect session sees it: the request, its own frames and how it closed.
class FakeDialectHost final : public DialectHost {
 public:
  FakeDialectHost() { request_.user = ChatUser{"alice", "alice"}; }

  const ConnectionRequest& request() const override { return request_; }
  boost::asio::any_io_executor executor() override { return io_.get_executor(); }
  absl::StatusOr<ChatUser> Authenticate(std::string_view, std::string_view) override {
    return ChatUser{"alice", "alice"};
  }
  Chat& OpenChat(ChatUser user, ChatOptions chat_options) override {
    options = chat_options;
    chat_ = std::make_unique<FakeChat>(std::move(user));
    return *chat_;
  }
  Chat* chat() override { return chat_.get(); }
  void Send(std::string frame) override { sent.push_back(std::move(frame)); }
  void Close(CloseCode code) override { closed = code; }

  FakeChat& fake_chat() { return *chat_; }
  // The request as a test wants it (its query, say).
  ConnectionRequest& mutable_request() { return request_; }
  // Runs what the session posted to its strand.
  void RunPosted() {
    io_.restart();
    io_.run();
  }

  ChatOptions options;
  std::vector<std::string> sent;
  std::optional<CloseCode> closed;

 private:
  boost::asio::io_context io_;
  ConnectionRequest request_;
  std::unique_ptr<FakeChat> chat_;
};

}  // namespace parley::edge::testing
