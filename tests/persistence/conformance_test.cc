// One suite, run through the gRPC service against every store.

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "persistence/conversation_service.h"
#include "prometheus/registry.h"
#include "tests/persistence/test_stores.h"

namespace parley::persistence {
namespace {

using ::parley::persistence::testing::MakeTempDir;
using ::parley::persistence::testing::OpenTestStore;
using ::parley::persistence::testing::RemoveDir;
using ::parley::persistence::testing::UniqueUser;
using ::testing::ElementsAre;

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    store_ = OpenTestStore(GetParam(), dir_);
    ASSERT_NE(store_, nullptr);
    service_ = std::make_unique<ConversationService>(
        *store_, std::make_shared<prometheus::Registry>(), ConversationService::Options{});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::ConversationService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
    alice_ = UniqueUser("alice");
    bob_ = UniqueUser("bob");
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
    server_.reset();
    service_.reset();
    store_.reset();
    RemoveDir(dir_);
  }

  v1::Conversation Create(const std::string& user, const std::string& title = "t") {
    grpc::ClientContext context;
    v1::CreateConversationRequest request;
    request.set_user_id(user);
    request.set_title(title);
    v1::CreateConversationResponse response;
    grpc::Status status = stub_->CreateConversation(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.conversation();
  }

  grpc::Status Append(const v1::AppendMessageRequest& request,
                      v1::AppendMessageResponse* response) {
    grpc::ClientContext context;
    return stub_->AppendMessage(&context, request, response);
  }

  v1::Message Append(const std::string& user, const std::string& conversation_id,
                     const std::string& content, const std::string& parent_id = "",
                     v1::MessageStatus status = v1::MESSAGE_STATUS_UNSPECIFIED) {
    v1::AppendMessageRequest request;
    request.set_user_id(user);
    request.set_conversation_id(conversation_id);
    request.set_content(content);
    request.set_parent_id(parent_id);
    request.set_status(status);
    request.set_role(status == v1::MESSAGE_STATUS_STREAMING ? v1::ROLE_ASSISTANT : v1::ROLE_USER);
    v1::AppendMessageResponse response;
    grpc::Status result = Append(request, &response);
    EXPECT_TRUE(result.ok()) << result.error_message();
    return response.message();
  }

  v1::Message StartStreaming(const std::string& user) {
    return Append(user, Create(user).id(), "", "", v1::MESSAGE_STATUS_STREAMING);
  }

  grpc::Status ListConversations(const std::string& user, int page_size, const std::string& token,
                                 v1::ListConversationsResponse* response) {
    grpc::ClientContext context;
    v1::ListConversationsRequest request;
    request.set_user_id(user);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return stub_->ListConversations(&context, request, response);
  }

  grpc::Status ListMessages(v1::ListMessagesRequest request, v1::ListMessagesResponse* response) {
    grpc::ClientContext context;
    return stub_->ListMessages(&context, request, response);
  }

  std::vector<std::string> Contents(const v1::ListMessagesResponse& response) {
    std::vector<std::string> contents;
    for (const v1::Message& message : response.messages()) {
      contents.push_back(message.content());
    }
    return contents;
  }

  grpc::Status GetMessage(const std::string& user, const std::string& id, v1::Message* message) {
    grpc::ClientContext context;
    v1::GetMessageRequest request;
    request.set_user_id(user);
    request.set_message_id(id);
    v1::GetMessageResponse response;
    grpc::Status status = stub_->GetMessage(&context, request, &response);
    *message = response.message();
    return status;
  }

  // Writes `deltas` (seq, text) after open and returns every ack's durable_seq.
  struct StreamResult {
    grpc::Status status;
    std::vector<int64_t> acks;
    bool finished = false;
  };
  StreamResult WriteStream(const std::string& user, const std::string& message_id,
                           const std::vector<std::pair<int64_t, std::string>>& deltas,
                           bool finish) {
    StreamResult result;
    grpc::ClientContext context;
    auto stream = stub_->WriteMessageStream(&context);
    v1::WriteMessageStreamRequest frame;
    frame.mutable_open()->set_user_id(user);
    frame.mutable_open()->set_message_id(message_id);
    bool open = stream->Write(frame);
    for (const auto& [seq, text] : deltas) {
      frame.mutable_delta()->set_seq(seq);
      frame.mutable_delta()->set_text(text);
      open = open && stream->Write(frame);
    }
    if (finish && open) {
      frame.mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
      frame.mutable_finish()->set_finish_reason("stop");
      frame.mutable_finish()->mutable_usage()->set_completion_tokens(
          static_cast<int>(deltas.size()));
      stream->Write(frame);
    }
    stream->WritesDone();
    v1::WriteMessageStreamResponse ack;
    while (stream->Read(&ack)) {
      result.acks.push_back(ack.durable_seq());
      result.finished = result.finished || ack.finished();
    }
    result.status = stream->Finish();
    return result;
  }

  struct WatchResult {
    grpc::Status status;
    std::string text;
    std::vector<int64_t> seqs;
    v1::WatchFinish finish;
    bool finished = false;
  };
  static void ReadWatch(grpc::ClientReader<v1::WatchMessageResponse>& reader, WatchResult& result,
                        bool stop_after_first_delta = false) {
    v1::WatchMessageResponse event;
    while (reader.Read(&event)) {
      if (event.has_delta()) {
        result.text += event.delta().text();
        result.seqs.push_back(event.delta().seq());
        if (stop_after_first_delta) {
          return;
        }
      } else if (event.has_finish()) {
        result.finish = event.finish();
        result.finished = true;
      }
    }
    result.status = reader.Finish();
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ConversationService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ConversationService::Stub> stub_;
  std::string alice_;
  std::string bob_;
};

TEST_P(ConformanceTest, CreateGetUpdateDelete) {
  v1::Conversation created = Create(alice_, "first");
  EXPECT_EQ(created.user_id(), alice_);
  EXPECT_FALSE(created.id().empty());

  grpc::ClientContext get_context;
  v1::GetConversationRequest get;
  get.set_user_id(alice_);
  get.set_conversation_id(created.id());
  v1::GetConversationResponse got;
  ASSERT_TRUE(stub_->GetConversation(&get_context, get, &got).ok());
  EXPECT_EQ(got.conversation().title(), "first");

  grpc::ClientContext update_context;
  v1::UpdateConversationRequest update;
  update.set_user_id(alice_);
  update.mutable_conversation()->set_id(created.id());
  update.mutable_conversation()->set_title("renamed");
  (*update.mutable_conversation()->mutable_metadata())["k"] = "v";
  update.mutable_update_mask()->add_paths("title");
  v1::UpdateConversationResponse updated;
  ASSERT_TRUE(stub_->UpdateConversation(&update_context, update, &updated).ok());
  EXPECT_EQ(updated.conversation().title(), "renamed");
  EXPECT_TRUE(updated.conversation().metadata().empty()) << "metadata was not in the mask";

  grpc::ClientContext meta_context;
  update.mutable_update_mask()->clear_paths();
  update.mutable_update_mask()->add_paths("metadata");
  ASSERT_TRUE(stub_->UpdateConversation(&meta_context, update, &updated).ok());
  EXPECT_EQ(updated.conversation().metadata().at("k"), "v");

  grpc::ClientContext delete_context;
  v1::DeleteConversationRequest del;
  del.set_user_id(alice_);
  del.set_conversation_id(created.id());
  v1::DeleteConversationResponse deleted;
  ASSERT_TRUE(stub_->DeleteConversation(&delete_context, del, &deleted).ok());

  grpc::ClientContext after_context;
  EXPECT_EQ(stub_->GetConversation(&after_context, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ListConversationsResponse list;
  ASSERT_TRUE(ListConversations(alice_, 0, "", &list).ok());
  EXPECT_EQ(list.conversations_size(), 0);
  v1::AppendMessageRequest append;
  append.set_user_id(alice_);
  append.set_conversation_id(created.id());
  append.set_role(v1::ROLE_USER);
  v1::AppendMessageResponse appended;
  EXPECT_EQ(Append(append, &appended).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(ConformanceTest, ListConversationsPagesNewestFirst) {
  v1::ListConversationsResponse page;
  ASSERT_TRUE(ListConversations(alice_, 2, "", &page).ok());
  EXPECT_EQ(page.conversations_size(), 0);
  EXPECT_EQ(page.next_page_token(), "");

  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(Create(alice_, "c" + std::to_string(i)).id());
  }
  Create(bob_);
  // Exactly two full pages: the second has no token, and there is no empty third.
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListConversationsResponse response;
    ASSERT_TRUE(ListConversations(alice_, 2, token, &response).ok());
    EXPECT_EQ(response.conversations_size(), 2);
    for (const auto& conversation : response.conversations()) {
      seen.push_back(conversation.id());
    }
    token = response.next_page_token();
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 2);
  EXPECT_THAT(seen, ElementsAre(ids[3], ids[2], ids[1], ids[0]));

  v1::ListConversationsResponse odd;
  ASSERT_TRUE(ListConversations(alice_, 3, "", &odd).ok());
  EXPECT_EQ(odd.conversations_size(), 3);
  v1::ListConversationsResponse rest;
  ASSERT_TRUE(ListConversations(alice_, 3, odd.next_page_token(), &rest).ok());
  EXPECT_EQ(rest.conversations_size(), 1);
  EXPECT_EQ(rest.next_page_token(), "");

  v1::ListConversationsResponse bad;
  EXPECT_EQ(ListConversations(alice_, 2, "not-a-token", &bad).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ListConversations(alice_, -1, "", &bad).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ConformanceTest, AppendIsIdempotentOnClientMessageId) {
  const std::string conversation = Create(alice_).id();
  v1::AppendMessageRequest request;
  request.set_user_id(alice_);
  request.set_conversation_id(conversation);
  request.set_role(v1::ROLE_USER);
  request.set_content("hello");
  request.set_client_message_id("client-1");
  v1::AppendMessageResponse first;
  ASSERT_TRUE(Append(request, &first).ok());
  EXPECT_TRUE(first.created());
  request.set_content("changed on retry");
  v1::AppendMessageResponse second;
  ASSERT_TRUE(Append(request, &second).ok());
  EXPECT_FALSE(second.created());
  EXPECT_EQ(second.message().id(), first.message().id());
  EXPECT_EQ(second.message().content(), "hello");

  v1::ListMessagesRequest list;
  list.set_user_id(alice_);
  list.set_conversation_id(conversation);
  v1::ListMessagesResponse messages;
  ASSERT_TRUE(ListMessages(list, &messages).ok());
  EXPECT_THAT(Contents(messages), ElementsAre("hello"));
}

TEST_P(ConformanceTest, AppendWithoutConversationCreatesOneIdempotently) {
  v1::AppendMessageRequest request;
  request.set_user_id(alice_);
  request.set_role(v1::ROLE_USER);
  request.set_content("first words");
  request.set_client_message_id("new-chat-1");
  request.set_conversation_title("A chat");
  v1::AppendMessageResponse first;
  ASSERT_TRUE(Append(request, &first).ok());
  EXPECT_TRUE(first.created());
  EXPECT_FALSE(first.message().conversation_id().empty());
  EXPECT_EQ(first.message().parent_id(), "");
  v1::AppendMessageResponse again;
  ASSERT_TRUE(Append(request, &again).ok());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.message().id(), first.message().id());
  EXPECT_EQ(again.message().conversation_id(), first.message().conversation_id());

  v1::ListConversationsResponse list;
  ASSERT_TRUE(ListConversations(alice_, 0, "", &list).ok());
  ASSERT_EQ(list.conversations_size(), 1);
  EXPECT_EQ(list.conversations(0).title(), "A chat");

  // The same client id from another user is another user's conversation.
  request.set_user_id(bob_);
  v1::AppendMessageResponse bobs;
  ASSERT_TRUE(Append(request, &bobs).ok());
  EXPECT_TRUE(bobs.created());
  EXPECT_NE(bobs.message().conversation_id(), first.message().conversation_id());
}

TEST_P(ConformanceTest, ListMessagesPagesInOrder) {
  const std::string conversation = Create(alice_).id();
  v1::ListMessagesRequest list;
  list.set_user_id(alice_);
  list.set_conversation_id(conversation);
  list.set_page_size(2);
  v1::ListMessagesResponse empty;
  ASSERT_TRUE(ListMessages(list, &empty).ok());
  EXPECT_EQ(empty.messages_size(), 0);
  EXPECT_EQ(empty.next_page_token(), "");

  for (const char* content : {"m1", "m2", "m3", "m4"}) {
    Append(alice_, conversation, content);
  }
  v1::ListMessagesResponse page1;
  ASSERT_TRUE(ListMessages(list, &page1).ok());
  EXPECT_THAT(Contents(page1), ElementsAre("m1", "m2"));
  ASSERT_NE(page1.next_page_token(), "");
  list.set_page_token(page1.next_page_token());
  v1::ListMessagesResponse page2;
  ASSERT_TRUE(ListMessages(list, &page2).ok());
  EXPECT_THAT(Contents(page2), ElementsAre("m3", "m4"));
  EXPECT_EQ(page2.next_page_token(), "");

  list.set_page_token("");
  list.set_newest(true);
  list.set_page_size(3);
  v1::ListMessagesResponse newest;
  ASSERT_TRUE(ListMessages(list, &newest).ok());
  EXPECT_THAT(Contents(newest), ElementsAre("m2", "m3", "m4"));

  list.set_newest(false);
  list.set_page_token("garbage!");
  v1::ListMessagesResponse bad;
  EXPECT_EQ(ListMessages(list, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ConformanceTest, TreePathsAndFork) {
  const std::string conversation = Create(alice_).id();
  const v1::Message root = Append(alice_, conversation, "root");
  const v1::Message a = Append(alice_, conversation, "a");
  EXPECT_EQ(a.parent_id(), root.id()) << "an empty parent appends after the latest message";
  const v1::Message b = Append(alice_, conversation, "b", root.id());  // an edit of `a`
  const v1::Message b2 = Append(alice_, conversation, "b2");
  EXPECT_EQ(b2.parent_id(), b.id());

  // An edit of the first message is a second root.
  v1::AppendMessageRequest second_root;
  second_root.set_user_id(alice_);
  second_root.set_conversation_id(conversation);
  second_root.set_role(v1::ROLE_USER);
  second_root.set_content("root2");
  second_root.set_no_parent(true);
  v1::AppendMessageResponse root2;
  ASSERT_TRUE(Append(second_root, &root2).ok());
  EXPECT_EQ(root2.message().parent_id(), "");
  const v1::Message after_root2 = Append(alice_, conversation, "c");
  EXPECT_EQ(after_root2.parent_id(), root2.message().id());

  v1::ListMessagesRequest path;
  path.set_user_id(alice_);
  path.set_conversation_id(conversation);
  path.set_leaf_message_id(b2.id());
  v1::ListMessagesResponse response;
  ASSERT_TRUE(ListMessages(path, &response).ok());
  EXPECT_THAT(Contents(response), ElementsAre("root", "b", "b2"));
  path.set_leaf_message_id(a.id());
  ASSERT_TRUE(ListMessages(path, &response).ok());
  EXPECT_THAT(Contents(response), ElementsAre("root", "a"));

  path.set_leaf_message_id(b2.id());
  path.set_page_size(2);
  v1::ListMessagesResponse first;
  ASSERT_TRUE(ListMessages(path, &first).ok());
  EXPECT_THAT(Contents(first), ElementsAre("root", "b"));
  path.set_page_token(first.next_page_token());
  v1::ListMessagesResponse second;
  ASSERT_TRUE(ListMessages(path, &second).ok());
  EXPECT_THAT(Contents(second), ElementsAre("b2"));
  EXPECT_EQ(second.next_page_token(), "");

  grpc::ClientContext fork_context;
  v1::ForkConversationRequest fork;
  fork.set_user_id(alice_);
  fork.set_conversation_id(conversation);
  fork.set_message_id(b.id());
  v1::ForkConversationResponse forked;
  ASSERT_TRUE(stub_->ForkConversation(&fork_context, fork, &forked).ok());
  EXPECT_NE(forked.conversation().id(), conversation);
  v1::ListMessagesRequest list;
  list.set_user_id(alice_);
  list.set_conversation_id(forked.conversation().id());
  ASSERT_TRUE(ListMessages(list, &response).ok());
  EXPECT_THAT(Contents(response), ElementsAre("root", "b"));
  EXPECT_EQ(response.messages(1).parent_id(), response.messages(0).id());
}

TEST_P(ConformanceTest, AnotherUsersDataIsNotFound) {
  const std::string conversation = Create(alice_).id();
  const v1::Message message = Append(alice_, conversation, "secret");
  const v1::Message streaming = Append(alice_, conversation, "", "", v1::MESSAGE_STATUS_STREAMING);

  grpc::ClientContext get_context;
  v1::GetConversationRequest get;
  get.set_user_id(bob_);
  get.set_conversation_id(conversation);
  v1::GetConversationResponse got;
  EXPECT_EQ(stub_->GetConversation(&get_context, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::ListConversationsResponse list;
  ASSERT_TRUE(ListConversations(bob_, 0, "", &list).ok());
  EXPECT_EQ(list.conversations_size(), 0);

  v1::Message read;
  EXPECT_EQ(GetMessage(bob_, message.id(), &read).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::ListMessagesRequest messages;
  messages.set_user_id(bob_);
  messages.set_conversation_id(conversation);
  v1::ListMessagesResponse listed;
  EXPECT_EQ(ListMessages(messages, &listed).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::AppendMessageRequest append;
  append.set_user_id(bob_);
  append.set_conversation_id(conversation);
  append.set_role(v1::ROLE_USER);
  v1::AppendMessageResponse appended;
  EXPECT_EQ(Append(append, &appended).error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext update_context;
  v1::UpdateConversationRequest update;
  update.set_user_id(bob_);
  update.mutable_conversation()->set_id(conversation);
  v1::UpdateConversationResponse updated;
  EXPECT_EQ(stub_->UpdateConversation(&update_context, update, &updated).error_code(),
            grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext delete_context;
  v1::DeleteConversationRequest del;
  del.set_user_id(bob_);
  del.set_conversation_id(conversation);
  v1::DeleteConversationResponse deleted;
  EXPECT_EQ(stub_->DeleteConversation(&delete_context, del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext fork_context;
  v1::ForkConversationRequest fork;
  fork.set_user_id(bob_);
  fork.set_conversation_id(conversation);
  fork.set_message_id(message.id());
  v1::ForkConversationResponse forked;
  EXPECT_EQ(stub_->ForkConversation(&fork_context, fork, &forked).error_code(),
            grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(WriteStream(bob_, streaming.id(), {{1, "x"}}, true).status.error_code(),
            grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext watch_context;
  v1::WatchMessageRequest watch;
  watch.set_user_id(bob_);
  watch.set_message_id(message.id());
  auto reader = stub_->WatchMessage(&watch_context, watch);
  WatchResult watched;
  ReadWatch(*reader, watched);
  EXPECT_EQ(watched.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(watched.text, "");

  // Alice's data is untouched.
  ASSERT_TRUE(GetMessage(alice_, message.id(), &read).ok());
  EXPECT_EQ(read.content(), "secret");
}

TEST_P(ConformanceTest, OversizedAndMissingInputsAreInvalid) {
  v1::CreateConversationRequest create;
  create.set_user_id(alice_);
  create.set_title(std::string(kMaxTitleBytes + 1, 't'));
  v1::CreateConversationResponse created;
  grpc::ClientContext c1;
  EXPECT_EQ(stub_->CreateConversation(&c1, create, &created).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  create.set_title("ok");
  (*create.mutable_metadata())["big"] = std::string(kMaxMetadataBytes, 'm');
  grpc::ClientContext c2;
  EXPECT_EQ(stub_->CreateConversation(&c2, create, &created).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  create.clear_metadata();
  create.clear_user_id();
  grpc::ClientContext c3;
  EXPECT_EQ(stub_->CreateConversation(&c3, create, &created).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  const std::string conversation = Create(alice_).id();
  v1::AppendMessageRequest append;
  append.set_user_id(alice_);
  append.set_conversation_id(conversation);
  append.set_role(v1::ROLE_USER);
  append.set_content(std::string(kMaxContentBytes + 1, 'c'));
  v1::AppendMessageResponse appended;
  EXPECT_EQ(Append(append, &appended).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  append.set_content(std::string(kMaxContentBytes, 'c'));
  EXPECT_TRUE(Append(append, &appended).ok()) << "the limit itself is allowed";
  append.set_content("x");
  append.set_role(v1::ROLE_UNSPECIFIED);
  EXPECT_EQ(Append(append, &appended).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  append.set_role(v1::ROLE_USER);
  append.set_client_message_id(std::string(kMaxIdBytes + 1, 'i'));
  EXPECT_EQ(Append(append, &appended).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext watch_context;
  v1::WatchMessageRequest watch;
  watch.set_message_id("some-message");  // no user_id
  auto reader = stub_->WatchMessage(&watch_context, watch);
  WatchResult watched;
  ReadWatch(*reader, watched);
  EXPECT_EQ(watched.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  const v1::Message streaming =
      Append(alice_, Create(alice_).id(), "", "", v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(WriteStream(alice_, streaming.id(), {{1, std::string(kMaxDeltaBytes + 1, 'd')}}, false)
                .status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ConformanceTest, StreamingWriteAcksAndStoresText) {
  const v1::Message message = StartStreaming(alice_);
  EXPECT_EQ(message.status(), v1::MESSAGE_STATUS_STREAMING);
  StreamResult partial = WriteStream(alice_, message.id(), {{1, "Hel"}, {2, "lo"}}, false);
  ASSERT_TRUE(partial.status.ok()) << partial.status.error_message();
  ASSERT_FALSE(partial.acks.empty());
  EXPECT_EQ(partial.acks.back(), 2);
  EXPECT_TRUE(std::is_sorted(partial.acks.begin(), partial.acks.end()));

  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "Hello");
  EXPECT_EQ(stored.last_seq(), 2);
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_STREAMING);

  // A retry resends seq 2; it is ignored and the stream carries on.
  StreamResult rest = WriteStream(alice_, message.id(), {{2, "lo"}, {3, ", "}, {4, "world"}}, true);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  EXPECT_EQ(rest.acks.front(), 2) << "the first ack says where the store stands";
  EXPECT_EQ(rest.acks.back(), 4);
  EXPECT_TRUE(rest.finished);

  ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "Hello, world");
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.finish_reason(), "stop");
  EXPECT_EQ(stored.usage().completion_tokens(), 3);
  EXPECT_EQ(stored.last_seq(), 4);

  // A finished message takes no more deltas.
  EXPECT_EQ(WriteStream(alice_, message.id(), {{5, "!"}}, false).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_P(ConformanceTest, StreamingWriteRefusesGaps) {
  const v1::Message message = StartStreaming(alice_);
  StreamResult gap = WriteStream(alice_, message.id(), {{1, "a"}, {3, "c"}}, true);
  EXPECT_EQ(gap.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(stored.content().find('c'), std::string::npos);

  const v1::Message fresh = StartStreaming(alice_);
  EXPECT_EQ(WriteStream(alice_, fresh.id(), {{2, "b"}}, false).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // The first frame must be open; a complete message cannot stream.
  const v1::Message complete = Append(alice_, Create(alice_).id(), "done");
  EXPECT_EQ(WriteStream(alice_, complete.id(), {}, false).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_P(ConformanceTest, WatchAfterTheStreamReplaysAndFinishes) {
  const v1::Message message = StartStreaming(alice_);
  ASSERT_TRUE(WriteStream(alice_, message.id(), {{1, "a"}, {2, "b"}, {3, "c"}}, true).status.ok());
  grpc::ClientContext context;
  v1::WatchMessageRequest request;
  request.set_user_id(alice_);
  request.set_message_id(message.id());
  request.set_after_seq(1);
  auto reader = stub_->WatchMessage(&context, request);
  WatchResult result;
  ReadWatch(*reader, result);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text, "bc");
  EXPECT_THAT(result.seqs, ElementsAre(3));
  ASSERT_TRUE(result.finished);
  EXPECT_EQ(result.finish.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(result.finish.last_seq(), 3);
}

TEST_P(ConformanceTest, WatchBeforeAndDuringTheStreamFollowsIt) {
  // Text the message was opened with lets the first watcher prove it is
  // following before any delta is written.
  const v1::Message message =
      Append(alice_, Create(alice_).id(), "pre:", "", v1::MESSAGE_STATUS_STREAMING);
  grpc::ClientContext before_context;
  v1::WatchMessageRequest request;
  request.set_user_id(alice_);
  request.set_message_id(message.id());
  auto before = stub_->WatchMessage(&before_context, request);
  WatchResult before_result;
  ReadWatch(*before, before_result, /*stop_after_first_delta=*/true);
  EXPECT_EQ(before_result.text, "pre:");
  EXPECT_THAT(before_result.seqs, ElementsAre(0));

  ASSERT_TRUE(WriteStream(alice_, message.id(), {{1, "one "}, {2, "two "}}, false).status.ok());
  grpc::ClientContext during_context;
  auto during = stub_->WatchMessage(&during_context, request);
  WatchResult during_result;
  ReadWatch(*during, during_result, /*stop_after_first_delta=*/true);
  EXPECT_EQ(during_result.text, "pre:one two ");
  EXPECT_THAT(during_result.seqs, ElementsAre(2));

  ASSERT_TRUE(WriteStream(alice_, message.id(), {{3, "three"}}, true).status.ok());
  ReadWatch(*during, during_result);
  ASSERT_TRUE(during_result.status.ok());
  EXPECT_EQ(during_result.text, "pre:one two three");
  EXPECT_EQ(during_result.seqs.back(), 3);
  EXPECT_TRUE(during_result.finished);

  ReadWatch(*before, before_result);
  ASSERT_TRUE(before_result.status.ok());
  EXPECT_EQ(before_result.text, "pre:one two three");
  EXPECT_TRUE(std::is_sorted(before_result.seqs.begin(), before_result.seqs.end()));
  EXPECT_EQ(before_result.finish.last_seq(), 3);

  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "pre:one two three");
}

TEST_P(ConformanceTest, ManyConcurrentStreamsAreAllDurable) {
  constexpr int kStreams = 20;
  constexpr int kDeltas = 50;
  std::vector<v1::Message> messages;
  for (int i = 0; i < kStreams; ++i) {
    messages.push_back(StartStreaming(alice_));
  }
  std::vector<std::thread> writers;
  std::vector<StreamResult> results(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    writers.emplace_back([&, i] {
      std::vector<std::pair<int64_t, std::string>> deltas;
      for (int seq = 1; seq <= kDeltas; ++seq) {
        deltas.emplace_back(seq, std::to_string(seq) + ",");
      }
      results[i] = WriteStream(alice_, messages[i].id(), deltas, true);
    });
  }
  for (std::thread& writer : writers) {
    writer.join();
  }
  std::string expected;
  for (int seq = 1; seq <= kDeltas; ++seq) {
    expected += std::to_string(seq) + ",";
  }
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].acks.back(), kDeltas);
    v1::Message stored;
    ASSERT_TRUE(GetMessage(alice_, messages[i].id(), &stored).ok());
    EXPECT_EQ(stored.content(), expected);
  }
}

INSTANTIATE_TEST_SUITE_P(Sqlite, ConformanceTest, ::testing::Values("sqlite"));
INSTANTIATE_TEST_SUITE_P(Postgres, ConformanceTest, ::testing::Values("postgresql"));

}  // namespace
}  // namespace parley::persistence
