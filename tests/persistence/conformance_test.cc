// One suite, run through the gRPC service against every store.

#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "persistence/conversation_service.h"
#include "persistence/store_factory.h"
#include "persistence/stores/sql_store.h"
#include "prometheus/registry.h"
#include "tests/persistence/test_stores.h"

namespace parley::persistence {
namespace {

using ::parley::persistence::testing::MakeTempDir;
using ::parley::persistence::testing::OpenTestStore;
using ::parley::persistence::testing::RemoveDir;
using ::parley::persistence::testing::StoreSpec;
using ::parley::persistence::testing::UniqueUser;
using ::testing::ElementsAre;

// The service over one store, on a loopback port: what one replica serves.
struct Serving {
  std::unique_ptr<ConversationService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::ConversationService::Stub> stub;

  ~Serving() {
    if (server != nullptr) {
      server->Shutdown();
    }
  }
};

std::unique_ptr<Serving> Serve(Store& store, ConversationService::Options options = {}) {
  auto serving = std::make_unique<Serving>();
  serving->service = std::make_unique<ConversationService>(
      store, std::make_shared<prometheus::Registry>(), options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(serving->service.get());
  serving->server = builder.BuildAndStart();
  EXPECT_NE(port, 0);
  serving->stub = v1::ConversationService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  return serving;
}

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    store_ = OpenTestStore(GetParam(), dir_);
    ASSERT_NE(store_, nullptr);
    serving_ = Serve(*store_);
    stub_ = serving_->stub.get();
    alice_ = UniqueUser("alice");
    bob_ = UniqueUser("bob");
  }

  void TearDown() override {
    serving_.reset();
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
    std::string sha256;  // from the finished ack
  };
  StreamResult WriteStream(const std::string& user, const std::string& message_id,
                           const std::vector<std::pair<int64_t, std::string>>& deltas, bool finish,
                           v1::MessageStatus end_status = v1::MESSAGE_STATUS_COMPLETE) {
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
      frame.mutable_finish()->set_status(end_status);
      frame.mutable_finish()->set_finish_reason("stop");
      frame.mutable_finish()->mutable_usage()->set_completion_tokens(
          static_cast<int>(deltas.size()));
      stream->Write(frame);
    }
    return EndStream(*stream);
  }

  // A write stream's first frame that starts a turn: `content` from `user`, answered by sim-1.
  static v1::WriteMessageStreamRequest StartFrame(const std::string& user,
                                                  const std::string& conversation_id,
                                                  const std::string& content) {
    v1::WriteMessageStreamRequest frame;
    v1::AppendMessageRequest& start = *frame.mutable_start();
    start.set_user_id(user);
    start.set_conversation_id(conversation_id);
    start.set_role(v1::ROLE_USER);
    start.set_content(content);
    start.mutable_turn()->set_reply_model("sim-1");
    return frame;
  }

  // Half-closes a write stream and collects its acknowledgements and status.
  static StreamResult EndStream(grpc::ClientReaderWriter<v1::WriteMessageStreamRequest,
                                                         v1::WriteMessageStreamResponse>& stream) {
    StreamResult result;
    stream.WritesDone();
    v1::WriteMessageStreamResponse ack;
    while (stream.Read(&ack)) {
      result.acks.push_back(ack.durable_seq());
      result.finished = result.finished || ack.finished();
      if (ack.finished()) {
        result.sha256 = ack.sha256();
      }
    }
    result.status = stream.Finish();
    return result;
  }

  // Like WriteStream, with each element of `batches` sent as one `deltas` frame.
  StreamResult WriteBatches(
      const std::string& user, const std::string& message_id,
      const std::vector<std::vector<std::pair<int64_t, std::string>>>& batches, bool finish) {
    grpc::ClientContext context;
    auto stream = stub_->WriteMessageStream(&context);
    v1::WriteMessageStreamRequest frame;
    frame.mutable_open()->set_user_id(user);
    frame.mutable_open()->set_message_id(message_id);
    bool open = stream->Write(frame);
    for (const auto& batch : batches) {
      frame.mutable_deltas()->clear_deltas();
      for (const auto& [seq, text] : batch) {
        v1::StreamDelta* delta = frame.mutable_deltas()->add_deltas();
        delta->set_seq(seq);
        delta->set_text(text);
      }
      open = open && stream->Write(frame);
    }
    if (finish && open) {
      frame.mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
      frame.mutable_finish()->set_finish_reason("stop");
      stream->Write(frame);
    }
    return EndStream(*stream);
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

  static v1::AppendMessageRequest NamedAppend(const std::string& user, const std::string& name,
                                              const std::string& content,
                                              const std::string& client_message_id = "") {
    v1::AppendMessageRequest request;
    request.set_user_id(user);
    request.set_client_conversation_id(name);
    request.set_role(v1::ROLE_USER);
    request.set_content(content);
    request.set_client_message_id(client_message_id);
    return request;
  }

  // Appends to the user's conversation named `name` and returns the stored message.
  v1::AppendMessageResponse AppendNamed(const std::string& user, const std::string& name,
                                        const std::string& content,
                                        const std::string& client_message_id = "") {
    v1::AppendMessageResponse response;
    grpc::Status status = Append(NamedAppend(user, name, content, client_message_id), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status GetByName(const std::string& user, const std::string& name,
                         v1::Conversation* conversation) {
    grpc::ClientContext context;
    v1::GetConversationRequest request;
    request.set_user_id(user);
    request.set_client_conversation_id(name);
    v1::GetConversationResponse response;
    grpc::Status status = stub_->GetConversation(&context, request, &response);
    *conversation = response.conversation();
    return status;
  }

  grpc::Status GetById(const std::string& user, const std::string& id,
                       v1::Conversation* conversation) {
    grpc::ClientContext context;
    v1::GetConversationRequest request;
    request.set_user_id(user);
    request.set_conversation_id(id);
    v1::GetConversationResponse response;
    grpc::Status status = stub_->GetConversation(&context, request, &response);
    *conversation = response.conversation();
    return status;
  }

  grpc::Status Delete(const std::string& user, const std::string& id) {
    grpc::ClientContext context;
    v1::DeleteConversationRequest request;
    request.set_user_id(user);
    request.set_conversation_id(id);
    v1::DeleteConversationResponse response;
    return stub_->DeleteConversation(&context, request, &response);
  }

  std::vector<std::string> ContentsOf(const std::string& user, const std::string& conversation) {
    v1::ListMessagesRequest request;
    request.set_user_id(user);
    request.set_conversation_id(conversation);
    v1::ListMessagesResponse response;
    grpc::Status status = ListMessages(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return Contents(response);
  }

  // Rounds of threads that all use a new name at the same moment, spread over
  // `stubs` (replicas); each round must end in one conversation. In odd rounds
  // every thread sends the same client message id, which must store one message.
  void RaceFirstUses(const std::vector<v1::ConversationService::Stub*>& stubs) {
    constexpr int kThreads = 8;
    constexpr int kRounds = 6;
    std::set<std::string> all_conversations;
    for (int round = 0; round < kRounds; ++round) {
      const std::string name = absl::StrCat("race-", round);
      const bool one_message = round % 2 == 1;
      std::latch start(kThreads);
      std::vector<grpc::Status> statuses(kThreads);
      std::vector<v1::AppendMessageResponse> responses(kThreads);
      std::vector<std::thread> threads;
      for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
          const v1::AppendMessageRequest request = NamedAppend(
              alice_, name, absl::StrCat("m", i), one_message ? "same" : absl::StrCat("m", i));
          grpc::ClientContext context;
          start.arrive_and_wait();
          statuses[i] = stubs[i % stubs.size()]->AppendMessage(&context, request, &responses[i]);
        });
      }
      for (std::thread& thread : threads) {
        thread.join();
      }
      std::set<std::string> conversations;
      int created = 0;
      for (int i = 0; i < kThreads; ++i) {
        ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
        conversations.insert(responses[i].message().conversation_id());
        created += responses[i].created() ? 1 : 0;
      }
      ASSERT_EQ(conversations.size(), 1u) << "round " << round;
      EXPECT_EQ(created, one_message ? 1 : kThreads) << "round " << round;
      EXPECT_EQ(ContentsOf(alice_, *conversations.begin()).size(), one_message ? 1u : kThreads);
      v1::Conversation named;
      ASSERT_TRUE(GetByName(alice_, name, &named).ok());
      EXPECT_EQ(named.id(), *conversations.begin());
      all_conversations.insert(named.id());
    }
    v1::ListConversationsResponse list;
    ASSERT_TRUE(ListConversations(alice_, 100, "", &list).ok());
    EXPECT_EQ(list.conversations_size(), kRounds);
    EXPECT_EQ(all_conversations.size(), static_cast<size_t>(kRounds));
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Serving> serving_;
  v1::ConversationService::Stub* stub_ = nullptr;
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
  // The newest of a path: its last messages, oldest first, however many the page holds.
  path.clear_page_token();
  path.set_newest(true);
  for (const auto& [size, contents] : std::vector<std::pair<int, std::vector<std::string>>>{
           {1, {"b2"}}, {2, {"b", "b2"}}, {3, {"root", "b", "b2"}}, {10, {"root", "b", "b2"}}}) {
    path.set_page_size(size);
    v1::ListMessagesResponse newest;
    ASSERT_TRUE(ListMessages(path, &newest).ok());
    EXPECT_EQ(Contents(newest), contents) << size;
    EXPECT_EQ(newest.next_page_token(), "");
  }
  path.set_newest(false);

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

// Text a stranger chooses, in every field that is stored: SQL metacharacters, LIKE wildcards,
// combining marks, right-to-left text and its override, astral characters, the largest sizes. It
// comes back byte for byte and never matches anything it does not equal.
TEST_P(ConformanceTest, HostileTextInEveryStoredFieldComesBackByteExact) {
  std::string big_content;
  while (big_content.size() < 60 * 1024) {
    big_content +=
        "'; DROP TABLE messages; -- %_\\ e\u0301 \u05e9\u05dc\u05d5\u05dd \u202e\U0001F600 ";
  }
  const std::vector<std::string> hostile = {
      "'; DROP TABLE conversations; --",
      "\" OR \"1\"=\"1",
      "%",
      "_",
      "a%b_c\\%\\_",
      "\\",
      "e\u0301\u0302\u0303 Z\u0351\u0352\u0353",
      "\u0645\u0631\u062d\u0628\u0627 \u202eabc\u202c \u200f",
      "\U0001F468\u200D\U0001F469\u200D\U0001F467",
      std::string(kMaxIdBytes - 8, 'x') + "%_'\\\"",
  };
  for (const std::string& text : hostile) {
    SCOPED_TRACE(text);
    // The user id is a field too; a unique prefix keeps runs apart, the rest is hostile.
    const std::string user = (UniqueUser("h") + text).substr(0, kMaxIdBytes);
    v1::CreateConversationRequest create;
    create.set_user_id(user);
    create.set_title(text);
    (*create.mutable_metadata())[text] = text;
    v1::CreateConversationResponse created;
    grpc::ClientContext create_context;
    ASSERT_TRUE(stub_->CreateConversation(&create_context, create, &created).ok());
    EXPECT_EQ(created.conversation().title(), text);

    v1::AppendMessageRequest append;
    append.set_user_id(user);
    append.set_conversation_id(created.conversation().id());
    append.set_role(v1::ROLE_USER);
    append.set_content(text + big_content);
    append.set_client_message_id(text.substr(0, kMaxIdBytes));
    append.set_model(text.substr(0, kMaxIdBytes));
    v1::AppendMessageResponse appended;
    ASSERT_TRUE(Append(append, &appended).ok());

    // A conversation named by the client with the same text, under the same user.
    v1::AppendMessageRequest named = append;
    named.clear_conversation_id();
    named.set_client_conversation_id(text.substr(0, kMaxIdBytes));
    named.set_conversation_title(text);
    v1::AppendMessageResponse named_appended;
    ASSERT_TRUE(Append(named, &named_appended).ok());

    v1::Message stored;
    ASSERT_TRUE(GetMessage(user, appended.message().id(), &stored).ok());
    EXPECT_EQ(stored.content(), text + big_content);
    EXPECT_EQ(stored.client_message_id(), text.substr(0, kMaxIdBytes));
    EXPECT_EQ(stored.model(), text.substr(0, kMaxIdBytes));
    v1::Conversation conversation;
    ASSERT_TRUE(GetById(user, created.conversation().id(), &conversation).ok());
    EXPECT_EQ(conversation.title(), text);
    EXPECT_EQ(conversation.user_id(), user);
    ASSERT_EQ(conversation.metadata().count(text), 1u);
    EXPECT_EQ(conversation.metadata().at(text), text);
    v1::Conversation by_name;
    ASSERT_TRUE(GetByName(user, text.substr(0, kMaxIdBytes), &by_name).ok());
    EXPECT_EQ(by_name.id(), named_appended.message().conversation_id());
    EXPECT_EQ(by_name.client_conversation_id(), text.substr(0, kMaxIdBytes));

    // Wildcards match only themselves: the user has exactly its two conversations, and a
    // name that a LIKE pattern would match is not found.
    v1::ListConversationsResponse listed;
    ASSERT_TRUE(ListConversations(user, 100, "", &listed).ok());
    EXPECT_EQ(listed.conversations_size(), 2);
    v1::Conversation lookalike;
    EXPECT_EQ(GetByName(user, absl::StrCat("z", text.substr(0, kMaxIdBytes - 1)), &lookalike)
                  .error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  // Past the documented limits: refused, and nothing stored.
  const std::string user = UniqueUser("limits");
  v1::AppendMessageRequest too_long;
  too_long.set_user_id(user);
  too_long.set_role(v1::ROLE_USER);
  too_long.set_content("x");
  too_long.set_client_message_id(std::string(kMaxIdBytes + 1, 'i'));
  v1::AppendMessageResponse refused;
  EXPECT_EQ(Append(too_long, &refused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  too_long.set_client_message_id("ok");
  too_long.set_model(std::string(kMaxIdBytes + 1, 'm'));
  EXPECT_EQ(Append(too_long, &refused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  too_long.set_model("");
  too_long.set_client_conversation_id(std::string(kMaxIdBytes + 1, 'n'));
  EXPECT_EQ(Append(too_long, &refused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  too_long.set_client_conversation_id("");
  too_long.set_content(std::string("nul\0inside", 10));
  EXPECT_EQ(Append(too_long, &refused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::CreateConversationRequest long_user;
  long_user.set_user_id(std::string(kMaxIdBytes + 1, 'u'));
  v1::CreateConversationResponse created;
  grpc::ClientContext context;
  EXPECT_EQ(stub_->CreateConversation(&context, long_user, &created).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ListConversationsResponse listed;
  ASSERT_TRUE(ListConversations(user, 100, "", &listed).ok());
  EXPECT_EQ(listed.conversations_size(), 0);
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

TEST_P(ConformanceTest, SeveralDeltasInOneFrameAreStoredWithTheirOwnSeqs) {
  const v1::Message message = StartStreaming(alice_);
  StreamResult first = WriteBatches(alice_, message.id(), {{{1, "Hel"}, {2, "lo"}, {3, ", "}}},
                                    /*finish=*/false);
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_FALSE(first.acks.empty());
  EXPECT_EQ(first.acks.back(), 3);

  // A writer whose stream broke resends every delta it has no ack for: the batch overlaps what
  // is stored (seqs 2 and 3), which is skipped, and carries on after it; single-delta frames and
  // batches mix.
  StreamResult resent = WriteBatches(
      alice_, message.id(), {{{2, "lo"}, {3, ", "}, {4, "wor"}}, {{5, "ld"}}, {{6, "!"}, {7, "!"}}},
      /*finish=*/true);
  ASSERT_TRUE(resent.status.ok()) << resent.status.error_message();
  EXPECT_EQ(resent.acks.front(), 3) << "the first ack says where the store stands";
  EXPECT_EQ(resent.acks.back(), 7);
  EXPECT_TRUE(resent.finished);

  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "Hello, world!!");
  EXPECT_EQ(stored.last_seq(), 7);
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);

  // Every seq keeps its own place: a resume from any of them gets exactly the rest.
  const std::vector<std::string> rests = {"Hello, world!!", "lo, world!!", ", world!!", "world!!",
                                          "ld!!",           "!!",          "!",         ""};
  for (int64_t after = 0; after <= 7; ++after) {
    grpc::ClientContext context;
    v1::WatchMessageRequest request;
    request.set_user_id(alice_);
    request.set_message_id(message.id());
    request.set_after_seq(after);
    auto reader = stub_->WatchMessage(&context, request);
    WatchResult watched;
    ReadWatch(*reader, watched);
    ASSERT_TRUE(watched.status.ok()) << watched.status.error_message();
    EXPECT_EQ(watched.text, rests[after]) << "after seq " << after;
    EXPECT_EQ(watched.finish.last_seq(), 7);
  }

  // A batch with a gap stores what comes before the gap and ends the stream.
  const v1::Message gapped = StartStreaming(alice_);
  StreamResult gap =
      WriteBatches(alice_, gapped.id(), {{{1, "a"}, {2, "b"}, {4, "d"}}}, /*finish=*/true);
  EXPECT_EQ(gap.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(GetMessage(alice_, gapped.id(), &stored).ok());
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(stored.content(), "ab");
  EXPECT_EQ(stored.last_seq(), 2);
}

// SHA-256 values computed outside Parley (sha256sum), so the store's hashing is checked against
// an independent implementation.
constexpr char kSha256OfHelloWorld[] =
    "4ae7c3b6ac0beff671efa8cf57386151c06e58ca53a78d83f36107316cec125f";  // "Hello, world"
constexpr char kSha256OfAb[] = "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603";
constexpr char kSha256OfAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kSha256OfDone[] =
    "a4c3ed04a95a3da14a9d235c83d868bed7c0f45cf7f3faa751ee8f50598d2211";  // "done"
constexpr char kSha256OfEmpty[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST_P(ConformanceTest, EveryEndedMessageCarriesTheSha256OfItsStoredText) {
  const std::string conversation_id = Create(alice_).id();
  // A message stored complete has its checksum from the start.
  const v1::Message user = Append(alice_, conversation_id, "done");
  EXPECT_EQ(user.sha256(), kSha256OfDone);

  // A streaming message has none until it ends; then the finished ack, every read and a watch
  // carry the checksum of the whole stored text, whatever status ended it.
  struct Ending {
    v1::MessageStatus status;
    std::vector<std::pair<int64_t, std::string>> deltas;
    const char* sha256;
  };
  const std::vector<Ending> endings = {
      {v1::MESSAGE_STATUS_COMPLETE, {{1, "Hello"}, {2, ", "}, {3, "world"}}, kSha256OfHelloWorld},
      {v1::MESSAGE_STATUS_CANCELLED, {{1, "a"}, {2, "b"}}, kSha256OfAb},
      {v1::MESSAGE_STATUS_INTERRUPTED, {{1, "ab"}, {2, "c"}}, kSha256OfAbc},
      {v1::MESSAGE_STATUS_ERROR, {}, kSha256OfEmpty},
  };
  for (const Ending& ending : endings) {
    SCOPED_TRACE(v1::MessageStatus_Name(ending.status));
    const v1::Message reply =
        Append(alice_, conversation_id, "", user.id(), v1::MESSAGE_STATUS_STREAMING);
    EXPECT_TRUE(reply.sha256().empty());
    if (!ending.deltas.empty()) {
      ASSERT_TRUE(WriteStream(alice_, reply.id(), {ending.deltas.front()}, false).status.ok());
      v1::Message streaming;
      ASSERT_TRUE(GetMessage(alice_, reply.id(), &streaming).ok());
      EXPECT_TRUE(streaming.sha256().empty()) << "a message still streaming has no checksum";
    }
    const StreamResult written =
        WriteStream(alice_, reply.id(), ending.deltas, true, ending.status);
    ASSERT_TRUE(written.status.ok()) << written.status.error_message();
    ASSERT_TRUE(written.finished);
    EXPECT_EQ(written.sha256, ending.sha256);

    v1::Message stored;
    ASSERT_TRUE(GetMessage(alice_, reply.id(), &stored).ok());
    EXPECT_EQ(stored.status(), ending.status);
    EXPECT_EQ(stored.sha256(), ending.sha256);

    grpc::ClientContext context;
    v1::WatchMessageRequest request;
    request.set_user_id(alice_);
    request.set_message_id(reply.id());
    request.set_after_seq(1);
    auto reader = stub_->WatchMessage(&context, request);
    WatchResult watched;
    ReadWatch(*reader, watched);
    ASSERT_TRUE(watched.finished);
    EXPECT_EQ(watched.finish.sha256(), ending.sha256) << "the whole text's, not the tail's";
  }

  v1::ListMessagesRequest list;
  list.set_user_id(alice_);
  list.set_conversation_id(conversation_id);
  v1::ListMessagesResponse page;
  ASSERT_TRUE(ListMessages(list, &page).ok());
  ASSERT_EQ(page.messages_size(), 1 + static_cast<int>(endings.size()));
  EXPECT_EQ(page.messages(0).sha256(), kSha256OfDone);
  for (size_t i = 0; i < endings.size(); ++i) {
    EXPECT_EQ(page.messages(static_cast<int>(i) + 1).sha256(), endings[i].sha256);
  }
}

TEST_P(ConformanceTest, AForkedCopyOfAStreamingMessageEndsWithTheChecksumOfItsText) {
  const std::string conversation_id = Create(alice_).id();
  const v1::Message user = Append(alice_, conversation_id, "done");
  const v1::Message reply =
      Append(alice_, conversation_id, "", user.id(), v1::MESSAGE_STATUS_STREAMING);
  ASSERT_TRUE(WriteStream(alice_, reply.id(), {{1, "ab"}, {2, "c"}}, false).status.ok());
  grpc::ClientContext context;
  v1::ForkConversationRequest fork;
  fork.set_user_id(alice_);
  fork.set_conversation_id(conversation_id);
  fork.set_message_id(reply.id());
  v1::ForkConversationResponse forked;
  ASSERT_TRUE(stub_->ForkConversation(&context, fork, &forked).ok());
  v1::ListMessagesRequest list;
  list.set_user_id(alice_);
  list.set_conversation_id(forked.conversation().id());
  v1::ListMessagesResponse page;
  ASSERT_TRUE(ListMessages(list, &page).ok());
  ASSERT_EQ(page.messages_size(), 2);
  EXPECT_EQ(page.messages(0).sha256(), kSha256OfDone);
  EXPECT_EQ(page.messages(1).status(), v1::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(page.messages(1).sha256(), kSha256OfAbc);
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

bool IsParleyId(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST_P(ConformanceTest, AClientNamedConversationIsCreatedOnFirstUseAndFoundAfterwards) {
  v1::Conversation missing;
  EXPECT_EQ(GetByName(alice_, "conv-123", &missing).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::AppendMessageRequest first_request = NamedAppend(alice_, "conv-123", "one", "c1");
  first_request.set_conversation_title("Named chat");
  v1::AppendMessageResponse first;
  ASSERT_TRUE(Append(first_request, &first).ok());
  EXPECT_TRUE(first.created());
  const std::string id = first.message().conversation_id();
  EXPECT_TRUE(IsParleyId(id)) << id;

  v1::Conversation named;
  ASSERT_TRUE(GetByName(alice_, "conv-123", &named).ok());
  EXPECT_EQ(named.id(), id);
  EXPECT_EQ(named.user_id(), alice_);
  EXPECT_EQ(named.title(), "Named chat");
  EXPECT_EQ(named.client_conversation_id(), "conv-123");
  v1::Conversation by_id;
  ASSERT_TRUE(GetById(alice_, id, &by_id).ok());
  EXPECT_EQ(by_id.client_conversation_id(), "conv-123");

  // Later uses continue it (the title of a later use changes nothing).
  v1::AppendMessageRequest second_request = NamedAppend(alice_, "conv-123", "two", "c2");
  second_request.set_conversation_title("Another title");
  v1::AppendMessageResponse second;
  ASSERT_TRUE(Append(second_request, &second).ok());
  EXPECT_TRUE(second.created());
  EXPECT_EQ(second.message().conversation_id(), id);
  EXPECT_EQ(second.message().parent_id(), first.message().id());
  EXPECT_THAT(ContentsOf(alice_, id), ElementsAre("one", "two"));
  ASSERT_TRUE(GetByName(alice_, "conv-123", &named).ok());
  EXPECT_EQ(named.title(), "Named chat");

  // A repeated client message id inside it returns the stored message.
  v1::AppendMessageResponse repeat;
  ASSERT_TRUE(Append(first_request, &repeat).ok());
  EXPECT_FALSE(repeat.created());
  EXPECT_EQ(repeat.message().id(), first.message().id());
  EXPECT_THAT(ContentsOf(alice_, id), ElementsAre("one", "two"));

  // Another name with the same client message id is another conversation with its own message.
  v1::AppendMessageResponse other = AppendNamed(alice_, "conv-456", "elsewhere", "c1");
  EXPECT_TRUE(other.created());
  EXPECT_NE(other.message().conversation_id(), id);
  EXPECT_THAT(ContentsOf(alice_, other.message().conversation_id()), ElementsAre("elsewhere"));

  // Appending by the Parley id reaches the same conversation.
  Append(alice_, id, "three");
  EXPECT_THAT(ContentsOf(alice_, id), ElementsAre("one", "two", "three"));

  // Lists carry the name; a conversation Parley named has none.
  const std::string plain = Create(alice_, "plain").id();
  v1::ListConversationsResponse list;
  ASSERT_TRUE(ListConversations(alice_, 0, "", &list).ok());
  std::map<std::string, std::string> names;
  for (const v1::Conversation& conversation : list.conversations()) {
    names[conversation.id()] = conversation.client_conversation_id();
  }
  EXPECT_EQ(names,
            (std::map<std::string, std::string>{
                {id, "conv-123"}, {other.message().conversation_id(), "conv-456"}, {plain, ""}}));
}

TEST_P(ConformanceTest, ClientConversationNamesArePerUser) {
  const std::string alices =
      AppendNamed(alice_, "conv-123", "alice's words").message().conversation_id();
  AppendNamed(alice_, "only-alice", "more of alice's words");

  // Bob's "conv-123" is his own new conversation.
  v1::Conversation missing;
  EXPECT_EQ(GetByName(bob_, "conv-123", &missing).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::AppendMessageResponse bobs = AppendNamed(bob_, "conv-123", "bob's words");
  EXPECT_TRUE(bobs.created());
  EXPECT_NE(bobs.message().conversation_id(), alices);
  EXPECT_THAT(ContentsOf(bob_, bobs.message().conversation_id()), ElementsAre("bob's words"));
  EXPECT_THAT(ContentsOf(alice_, alices), ElementsAre("alice's words"));

  // Bob cannot reach Alice's by her Parley id, and by name he only ever reaches his own.
  v1::Conversation read;
  EXPECT_EQ(GetById(bob_, alices, &read).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetByName(bob_, "only-alice", &read).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(GetByName(bob_, "conv-123", &read).ok());
  EXPECT_EQ(read.id(), bobs.message().conversation_id());
  EXPECT_EQ(read.user_id(), bob_);
  v1::ListMessagesRequest list;
  list.set_user_id(bob_);
  list.set_conversation_id(alices);
  v1::ListMessagesResponse listed;
  EXPECT_EQ(ListMessages(list, &listed).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::AppendMessageRequest into_alices;
  into_alices.set_user_id(bob_);
  into_alices.set_conversation_id(alices);
  into_alices.set_role(v1::ROLE_USER);
  into_alices.set_content("intrusion");
  v1::AppendMessageResponse refused;
  EXPECT_EQ(Append(into_alices, &refused).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Delete(bob_, alices).error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_THAT(ContentsOf(alice_, alices), ElementsAre("alice's words"));
  v1::ListConversationsResponse bobs_list;
  ASSERT_TRUE(ListConversations(bob_, 0, "", &bobs_list).ok());
  ASSERT_EQ(bobs_list.conversations_size(), 1);
  EXPECT_EQ(bobs_list.conversations(0).id(), bobs.message().conversation_id());
}

TEST_P(ConformanceTest, DeletingAClientNamedConversationFreesItsName) {
  const std::string old_id = AppendNamed(alice_, "conv-123", "before").message().conversation_id();
  ASSERT_TRUE(Delete(alice_, old_id).ok());
  v1::Conversation read;
  EXPECT_EQ(GetByName(alice_, "conv-123", &read).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::AppendMessageResponse fresh = AppendNamed(alice_, "conv-123", "after", "same-client-id");
  EXPECT_TRUE(fresh.created());
  EXPECT_NE(fresh.message().conversation_id(), old_id);
  EXPECT_EQ(fresh.message().parent_id(), "");
  EXPECT_THAT(ContentsOf(alice_, fresh.message().conversation_id()), ElementsAre("after"));
  ASSERT_TRUE(GetByName(alice_, "conv-123", &read).ok());
  EXPECT_EQ(read.id(), fresh.message().conversation_id());
  EXPECT_EQ(GetById(alice_, old_id, &read).error_code(), grpc::StatusCode::NOT_FOUND);

  // Deleted again, and used again: each use after a delete starts afresh.
  ASSERT_TRUE(Delete(alice_, fresh.message().conversation_id()).ok());
  v1::AppendMessageResponse third = AppendNamed(alice_, "conv-123", "third", "same-client-id");
  EXPECT_TRUE(third.created());
  EXPECT_NE(third.message().conversation_id(), fresh.message().conversation_id());
  v1::ListConversationsResponse list;
  ASSERT_TRUE(ListConversations(alice_, 0, "", &list).ok());
  ASSERT_EQ(list.conversations_size(), 1);
  EXPECT_EQ(list.conversations(0).id(), third.message().conversation_id());
}

TEST_P(ConformanceTest, AForkOfAClientNamedConversationIsParleyNamed) {
  const v1::Message message = AppendNamed(alice_, "conv-123", "root").message();
  grpc::ClientContext context;
  v1::ForkConversationRequest fork;
  fork.set_user_id(alice_);
  fork.set_conversation_id(message.conversation_id());
  fork.set_message_id(message.id());
  v1::ForkConversationResponse forked;
  ASSERT_TRUE(stub_->ForkConversation(&context, fork, &forked).ok());
  EXPECT_EQ(forked.conversation().client_conversation_id(), "");
  EXPECT_NE(forked.conversation().id(), message.conversation_id());
  v1::Conversation named;
  ASSERT_TRUE(GetByName(alice_, "conv-123", &named).ok());
  EXPECT_EQ(named.id(), message.conversation_id());
  EXPECT_EQ(AppendNamed(alice_, "conv-123", "next").message().conversation_id(),
            message.conversation_id());
}

TEST_P(ConformanceTest, InvalidClientConversationIdsAreRefused) {
  const auto append_code = [&](const std::string& name) {
    v1::AppendMessageResponse response;
    return Append(NamedAppend(alice_, name, "text"), &response).error_code();
  };
  const auto get_code = [&](const std::string& name) {
    v1::Conversation conversation;
    return GetByName(alice_, name, &conversation).error_code();
  };
  for (const std::string& bad :
       {std::string(129, 'a'), std::string("line\nbreak"), std::string("tab\there"),
        std::string("del\x7f"), std::string("c1-\xc2\x85-next-line"), std::string("nul\0", 4)}) {
    EXPECT_EQ(append_code(bad), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(get_code(bad), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  v1::AppendMessageResponse response;
  grpc::Status long_name = Append(NamedAppend(alice_, std::string(129, 'a'), "text"), &response);
  EXPECT_TRUE(absl::StrContains(long_name.error_message(), "client_conversation_id"))
      << long_name.error_message();

  // Both ways of naming the conversation at once, or neither for a read.
  v1::AppendMessageRequest both = NamedAppend(alice_, "conv-123", "text");
  both.set_conversation_id(Create(alice_).id());
  EXPECT_EQ(Append(both, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext context;
    v1::GetConversationRequest request;
    request.set_user_id(alice_);
    request.set_conversation_id(both.conversation_id());
    request.set_client_conversation_id("conv-123");
    v1::GetConversationResponse got;
    EXPECT_EQ(stub_->GetConversation(&context, request, &got).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;
    v1::GetConversationRequest request;
    request.set_user_id(alice_);
    v1::GetConversationResponse got;
    EXPECT_EQ(stub_->GetConversation(&context, request, &got).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Nothing was created by the refused calls.
  v1::ListConversationsResponse list;
  ASSERT_TRUE(ListConversations(alice_, 0, "", &list).ok());
  EXPECT_EQ(list.conversations_size(), 1);

  // The longest name, and names beyond ASCII, are fine and read back unchanged.
  for (const std::string& good :
       {std::string(128, 'z'), std::string("разговор №1 — 会話 🙂"),
        std::string("0123456789abcdef0123456789abcdef")}) {
    const std::string id = AppendNamed(alice_, good, "hello").message().conversation_id();
    v1::Conversation named;
    ASSERT_TRUE(GetByName(alice_, good, &named).ok()) << good;
    EXPECT_EQ(named.id(), id);
    EXPECT_EQ(named.client_conversation_id(), good);
  }
}

TEST_P(ConformanceTest, ConcurrentFirstUsesOfANameCreateOneConversation) { RaceFirstUses({stub_}); }

TEST_P(ConformanceTest, ConcurrentFirstUsesOnTwoReplicasCreateOneConversation) {
  std::unique_ptr<Store> second_store = OpenTestStore(GetParam(), dir_);
  ASSERT_NE(second_store, nullptr);
  std::unique_ptr<Serving> second = Serve(*second_store);
  RaceFirstUses({stub_, second->stub.get()});
}

// A conversation watch, read one response at a time.
class ConversationWatch {
 public:
  // `by_name`: `conversation_id` is a client's name of the conversation.
  ConversationWatch(v1::ConversationService::Stub* stub, const std::string& user,
                    const std::string& conversation_id, bool by_name = false) {
    v1::WatchConversationRequest request;
    request.set_user_id(user);
    if (by_name) {
      request.set_client_conversation_id(conversation_id);
    } else {
      request.set_conversation_id(conversation_id);
    }
    reader_ = stub->WatchConversation(&context_, request);
  }
  ~ConversationWatch() {
    if (!ended_) {
      context_.TryCancel();
      v1::WatchConversationResponse ignored;
      while (reader_->Read(&ignored)) {
      }
    }
    Finish().IgnoreError();
  }

  // The next response; an empty one when the stream ended.
  v1::WatchConversationResponse Next() {
    v1::WatchConversationResponse response;
    if (!reader_->Read(&response)) {
      response.Clear();
      ended_ = true;
    }
    return response;
  }
  // Once the stream ended: how.
  grpc::Status Finish() {
    if (!status_.has_value()) {
      status_ = reader_->Finish();
    }
    return *status_;
  }

 private:
  std::optional<grpc::Status> status_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WatchConversationResponse>> reader_;
  bool ended_ = false;
};

void SetTimestamp(absl::Time time, google::protobuf::Timestamp* timestamp) {
  timestamp->set_seconds(absl::ToUnixSeconds(time));
  timestamp->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(absl::ToUnixSeconds(time)))));
}

// `sent` and `expire` are set when not InfinitePast.
grpc::Status PublishSignal(v1::ConversationService::Stub* stub, const std::string& user,
                           const std::string& conversation_id, v1::SignalKind kind,
                           const std::string& origin, const std::string& payload,
                           absl::Time sent = absl::InfinitePast(),
                           absl::Time expire = absl::InfinitePast()) {
  grpc::ClientContext context;
  v1::PublishSignalRequest request;
  request.set_user_id(user);
  request.set_conversation_id(conversation_id);
  request.mutable_signal()->set_kind(kind);
  request.mutable_signal()->set_origin(origin);
  request.mutable_signal()->set_payload(payload);
  if (sent != absl::InfinitePast()) {
    SetTimestamp(sent, request.mutable_sent_time());
  }
  if (expire != absl::InfinitePast()) {
    SetTimestamp(expire, request.mutable_expire_time());
  }
  v1::PublishSignalResponse response;
  return stub->PublishSignal(&context, request, &response);
}

// One group commit makes the last deltas of some replies durable and ends them: a finish goes
// after its message's deltas, and one that would skip a seq, or ends a message that is not
// streaming, fails alone without holding back the rest of the batch.
TEST_P(ConformanceTest, ABatchEndsRepliesAfterTheirLastDeltasAndRefusesAFinishThatWouldSkipOne) {
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(stub_, alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  const v1::Message question = Append(alice_, conversation.id(), "q");
  const v1::Message ends =
      Append(alice_, conversation.id(), "", question.id(), v1::MESSAGE_STATUS_STREAMING);
  for (const v1::Message* added : {&question, &ends}) {
    v1::WatchConversationResponse event = watch.Next();
    ASSERT_TRUE(event.event().has_message_added()) << event.DebugString();
    ASSERT_EQ(event.event().message_added().message().id(), added->id());
  }
  // In conversations of their own.
  const v1::Message short_one = StartStreaming(alice_);
  const v1::Message ended = StartStreaming(alice_);
  ASSERT_TRUE(WriteStream(alice_, ended.id(), {{1, "done"}}, true).status.ok());

  v1::StreamFinish complete;
  complete.set_status(v1::MESSAGE_STATUS_COMPLETE);
  complete.set_finish_reason("stop");
  complete.mutable_usage()->set_completion_tokens(3);
  const BatchResult batch = store_->CommitBatch(
      {DeltaRun{ends.id(), 1, {"a", "b", "c"}}, DeltaRun{short_one.id(), 1, {"x"}}},
      {FinishRun{ends.id(), 3, complete}, FinishRun{short_one.id(), 2, complete},
       FinishRun{ended.id(), 1, complete},
       FinishRun{"0123456789abcdef0123456789abcdef", 0, complete}});
  ASSERT_EQ(batch.runs.size(), 2u);
  ASSERT_TRUE(batch.runs[0].ok()) << batch.runs[0].status();
  EXPECT_EQ(*batch.runs[0], 3);
  ASSERT_TRUE(batch.runs[1].ok()) << batch.runs[1].status();
  EXPECT_EQ(*batch.runs[1], 1);
  ASSERT_EQ(batch.finishes.size(), 4u);
  ASSERT_TRUE(batch.finishes[0].ok()) << batch.finishes[0].status();
  EXPECT_EQ(batch.finishes[0]->content(), "abc");
  EXPECT_EQ(batch.finishes[0]->last_seq(), 3);
  EXPECT_EQ(batch.finishes[0]->status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(batch.finishes[0]->sha256(), common::Sha256Hex("abc"));
  EXPECT_EQ(batch.finishes[1].status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(batch.finishes[2].status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(batch.finishes[3].status().code(), absl::StatusCode::kNotFound);

  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, ends.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "abc");
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.usage().completion_tokens(), 3);
  EXPECT_EQ(stored.sha256(), common::Sha256Hex("abc"));
  // The refused finish left its message streaming, with the delta its batch stored.
  ASSERT_TRUE(GetMessage(alice_, short_one.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "x");
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_STREAMING);
  ASSERT_TRUE(GetMessage(alice_, ended.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "done");
  // Watchers of the conversation hear the reply ended, as from FinishMessage.
  v1::WatchConversationResponse finished = watch.Next();
  ASSERT_TRUE(finished.event().has_reply_finished()) << finished.DebugString();
  EXPECT_EQ(finished.event().reply_finished().message_id(), ends.id());
  EXPECT_EQ(finished.event().reply_finished().last_seq(), 3);
  EXPECT_EQ(finished.event().reply_finished().sha256(), common::Sha256Hex("abc"));
  // A watch of the message reads it whole and ended, and so does a read from a seq.
  WatchResult watched;
  grpc::ClientContext context;
  v1::WatchMessageRequest request;
  request.set_user_id(alice_);
  request.set_message_id(ends.id());
  request.set_after_seq(1);
  std::unique_ptr<grpc::ClientReader<v1::WatchMessageResponse>> reader =
      stub_->WatchMessage(&context, request);
  ReadWatch(*reader, watched);
  ASSERT_TRUE(watched.status.ok()) << watched.status.error_message();
  EXPECT_EQ(watched.text, "bc");
  EXPECT_TRUE(watched.finished);
  EXPECT_EQ(watched.finish.last_seq(), 3);
}

// A writer's finish sent right behind its last deltas ends the reply with all of them, and the
// stream's last acknowledgement says so.
TEST_P(ConformanceTest, AFinishRightBehindTheLastDeltasEndsTheReplyWithEveryOne) {
  for (int round = 0; round < 20; ++round) {
    const v1::Message message = StartStreaming(alice_);
    std::vector<std::pair<int64_t, std::string>> deltas;
    std::string text;
    for (int seq = 1; seq <= 1 + round % 5; ++seq) {
      deltas.emplace_back(seq, absl::StrCat("t", seq, " "));
      text += deltas.back().second;
    }
    StreamResult written = WriteStream(alice_, message.id(), deltas, true);
    ASSERT_TRUE(written.status.ok()) << written.status.error_message();
    ASSERT_TRUE(written.finished);
    EXPECT_EQ(written.acks.back(), static_cast<int64_t>(deltas.size()));
    EXPECT_EQ(written.sha256, common::Sha256Hex(text));
    v1::Message stored;
    ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
    EXPECT_EQ(stored.content(), text);
    EXPECT_EQ(stored.last_seq(), static_cast<int64_t>(deltas.size()));
    EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  }
}

// A `last` frame is the reply's final deltas and its finish at once: stored as the two frames
// would be, every acknowledgement says the frame is taken, and a gap in it ends nothing.
TEST_P(ConformanceTest, AReplysLastDeltasAndFinishInOneFrameEndItAsTwoFramesWould) {
  const v1::Message message = StartStreaming(alice_);
  grpc::ClientContext context;
  auto stream = stub_->WriteMessageStream(&context);
  v1::WriteMessageStreamRequest frame;
  frame.mutable_open()->set_user_id(alice_);
  frame.mutable_open()->set_message_id(message.id());
  ASSERT_TRUE(stream->Write(frame));
  frame.mutable_delta()->set_seq(1);
  frame.mutable_delta()->set_text("One, ");
  ASSERT_TRUE(stream->Write(frame));
  v1::WriteMessageStreamResponse ack;
  ASSERT_TRUE(stream->Read(&ack));
  EXPECT_TRUE(ack.takes_last()) << ack.DebugString();

  v1::StreamLast& last = *frame.mutable_last();
  for (int seq = 1; seq <= 3; ++seq) {  // seq 1 again: a retry, skipped
    v1::StreamDelta& delta = *last.add_deltas();
    delta.set_seq(seq);
    delta.set_text(seq == 1 ? "One, " : seq == 2 ? "two, " : "three.");
  }
  last.mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
  last.mutable_finish()->set_finish_reason("length");
  last.mutable_finish()->mutable_usage()->set_completion_tokens(3);
  ASSERT_TRUE(stream->Write(frame, grpc::WriteOptions().set_last_message()));
  bool finished = false;
  std::string sha256;
  int64_t durable = 0;
  while (stream->Read(&ack)) {
    EXPECT_TRUE(ack.takes_last());
    durable = ack.durable_seq();
    if (ack.finished()) {
      finished = true;
      sha256 = ack.sha256();
    }
  }
  const grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(finished);
  EXPECT_EQ(durable, 3);
  EXPECT_EQ(sha256, common::Sha256Hex("One, two, three."));
  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, message.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "One, two, three.");
  EXPECT_EQ(stored.last_seq(), 3);
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.finish_reason(), "length");
  EXPECT_EQ(stored.usage().completion_tokens(), 3);

  // A gap refuses the frame: its finish is not applied, the message stays streaming.
  const v1::Message gapped = StartStreaming(alice_);
  grpc::ClientContext gap_context;
  auto gap_stream = stub_->WriteMessageStream(&gap_context);
  v1::WriteMessageStreamRequest open;
  open.mutable_open()->set_user_id(alice_);
  open.mutable_open()->set_message_id(gapped.id());
  ASSERT_TRUE(gap_stream->Write(open));
  v1::WriteMessageStreamRequest skip;
  v1::StreamDelta& two = *skip.mutable_last()->add_deltas();
  two.set_seq(2);
  two.set_text("two");
  skip.mutable_last()->mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
  gap_stream->Write(skip, grpc::WriteOptions().set_last_message());
  while (gap_stream->Read(&ack)) {
    EXPECT_FALSE(ack.finished());
  }
  EXPECT_EQ(gap_stream->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(GetMessage(alice_, gapped.id(), &stored).ok());
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(stored.content(), "");
}

TEST_P(ConformanceTest, AConversationWatchSeesMessagesRepliesAndSignalsInOrder) {
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(stub_, alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());

  const v1::Message question = Append(alice_, conversation.id(), "hello?");
  v1::WatchConversationResponse added = watch.Next();
  ASSERT_TRUE(added.has_event()) << added.DebugString();
  EXPECT_EQ(added.event().conversation_id(), conversation.id());
  ASSERT_TRUE(added.event().has_message_added());
  EXPECT_EQ(added.event().message_added().message().id(), question.id());
  EXPECT_EQ(added.event().message_added().message().content(), "hello?");
  EXPECT_FALSE(added.event().message_added().content_omitted());

  ASSERT_TRUE(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_TYPING, "edge-1/7",
                            R"({"typing":true})")
                  .ok());
  v1::WatchConversationResponse typing = watch.Next();
  ASSERT_TRUE(typing.event().has_signal()) << typing.DebugString();
  EXPECT_EQ(typing.event().signal().kind(), v1::SIGNAL_KIND_TYPING);
  EXPECT_EQ(typing.event().signal().origin(), "edge-1/7");
  EXPECT_EQ(typing.event().signal().payload(), R"({"typing":true})");
  EXPECT_GT(typing.event().event_time().seconds(), 0);

  const v1::Message reply =
      Append(alice_, conversation.id(), "", question.id(), v1::MESSAGE_STATUS_STREAMING);
  v1::WatchConversationResponse started = watch.Next();
  ASSERT_TRUE(started.event().has_message_added()) << started.DebugString();
  EXPECT_EQ(started.event().message_added().message().id(), reply.id());
  EXPECT_EQ(started.event().message_added().message().status(), v1::MESSAGE_STATUS_STREAMING);

  StreamResult written = WriteStream(alice_, reply.id(), {{1, "Hi "}, {2, "there"}}, true);
  ASSERT_TRUE(written.status.ok()) << written.status.error_message();
  v1::WatchConversationResponse finished = watch.Next();
  ASSERT_TRUE(finished.event().has_reply_finished()) << finished.DebugString();
  EXPECT_EQ(finished.event().reply_finished().message_id(), reply.id());
  EXPECT_EQ(finished.event().reply_finished().status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(finished.event().reply_finished().last_seq(), 2);
  EXPECT_EQ(finished.event().reply_finished().sha256(), written.sha256);

  // Signals are never stored: the conversation holds the two messages only.
  EXPECT_THAT(ContentsOf(alice_, conversation.id()), ElementsAre("hello?", "Hi there"));
}

TEST_P(ConformanceTest, AnotherUsersConversationCannotBeWatchedOrSignalled) {
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(stub_, bob_, conversation.id());
  EXPECT_FALSE(watch.Next().has_ready());
  EXPECT_EQ(watch.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(
      PublishSignal(stub_, bob_, conversation.id(), v1::SIGNAL_KIND_TYPING, "", "").error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_UNSPECIFIED, "", "")
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_JOIN, "",
                          std::string(1025, 'x'))
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ConformanceTest, ALateTypingSignalIsDroppedWhileJoinsStillArrive) {
  // A maximum age below zero makes every typing signal late when it arrives.
  ConversationService::Options options;
  options.signal_max_age = absl::Seconds(-1);
  std::unique_ptr<Serving> strict = Serve(*store_, options);
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(strict->stub.get(), alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  ASSERT_TRUE(
      PublishSignal(strict->stub.get(), alice_, conversation.id(), v1::SIGNAL_KIND_TYPING, "a", "")
          .ok());
  ASSERT_TRUE(
      PublishSignal(strict->stub.get(), alice_, conversation.id(), v1::SIGNAL_KIND_JOIN, "a", "")
          .ok());
  v1::WatchConversationResponse next = watch.Next();
  ASSERT_TRUE(next.event().has_signal()) << next.DebugString();
  EXPECT_EQ(next.event().signal().kind(), v1::SIGNAL_KIND_JOIN);
}

// Its age counts from when the sender made it: a typing signal that waited on the way (a hung
// replica) is refused when it arrives too old, or past the time its sender gave up on it.
grpc::Status PublishSignalByName(v1::ConversationService::Stub* stub, const std::string& user,
                                 const std::string& name, v1::SignalKind kind,
                                 const std::string& payload) {
  grpc::ClientContext context;
  v1::PublishSignalRequest request;
  request.set_user_id(user);
  request.set_client_conversation_id(name);
  request.mutable_signal()->set_kind(kind);
  request.mutable_signal()->set_origin("edge-n/1");
  request.mutable_signal()->set_payload(payload);
  v1::PublishSignalResponse response;
  return stub->PublishSignal(&context, request, &response);
}

TEST_P(ConformanceTest, ATypingSignalThatArrivesTooOldIsRefusedNotDelivered) {
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(stub_, alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  const absl::Time now = absl::Now();
  EXPECT_EQ(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_TYPING, "a", "old",
                          now - absl::Hours(1))
                .error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_TYPING, "a", "given up",
                          now, now - absl::Seconds(1))
                .error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  // Joins are never too old.
  ASSERT_TRUE(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_JOIN, "a", "join",
                            now - absl::Hours(1))
                  .ok());
  const absl::Time sent = absl::Now() - absl::Milliseconds(10);
  ASSERT_TRUE(PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_TYPING, "a", "fresh",
                            sent, absl::Now() + absl::Seconds(60))
                  .ok());
  v1::WatchConversationResponse join = watch.Next();
  ASSERT_TRUE(join.event().has_signal()) << join.DebugString();
  EXPECT_EQ(join.event().signal().payload(), "join");
  v1::WatchConversationResponse typing = watch.Next();
  ASSERT_TRUE(typing.event().has_signal()) << typing.DebugString();
  EXPECT_EQ(typing.event().signal().payload(), "fresh");
  // Stamped with the sender's time, so every replica ages it from there.
  google::protobuf::Timestamp expected;
  SetTimestamp(sent, &expected);
  EXPECT_EQ(typing.event().event_time().seconds(), expected.seconds());
  EXPECT_EQ(typing.event().event_time().nanos() / 1000, expected.nanos() / 1000);
}

TEST_P(ConformanceTest, AMessageEventCarriesTheOriginOfItsAppend) {
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(stub_, alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  v1::AppendMessageRequest request;
  request.set_user_id(alice_);
  request.set_conversation_id(conversation.id());
  request.set_role(v1::ROLE_USER);
  request.set_content("from an edge");
  request.set_origin("edge-0123456789abcdef");
  v1::AppendMessageResponse response;
  ASSERT_TRUE(Append(request, &response).ok());
  v1::WatchConversationResponse added = watch.Next();
  ASSERT_TRUE(added.event().has_message_added()) << added.DebugString();
  EXPECT_EQ(added.event().message_added().origin(), "edge-0123456789abcdef");
  EXPECT_EQ(added.event().message_added().message().id(), response.message().id());
  request.set_origin(std::string(129, 'o'));
  EXPECT_EQ(Append(request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A user message appended with `turn` starts the turn in one call: stored as without it, with
// its branch history and a streaming reply that a write stream then fills.
TEST_P(ConformanceTest, ATurnStartStoresTheMessageReturnsItsBranchAndOpensItsReply) {
  const v1::Conversation conversation = Create(alice_);
  // Watching from before the first message: an event committed just before `ready` may still
  // follow it (PostgreSQL notifies asynchronously).
  ConversationWatch watch(stub_, alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  const v1::Message one = Append(alice_, conversation.id(), "one");
  const v1::Message two = Append(alice_, conversation.id(), "two", one.id());
  const v1::Message other = Append(alice_, conversation.id(), "another branch", one.id());
  for (const v1::Message* earlier : {&one, &two, &other}) {
    v1::WatchConversationResponse added = watch.Next();
    ASSERT_TRUE(added.event().has_message_added()) << added.DebugString();
    ASSERT_EQ(added.event().message_added().message().id(), earlier->id());
  }

  v1::AppendMessageRequest request;
  request.set_user_id(alice_);
  request.set_conversation_id(conversation.id());
  request.set_parent_id(two.id());
  request.set_role(v1::ROLE_USER);
  request.set_content("three");
  request.set_client_message_id("c-3");
  request.set_model("requested-model");
  request.set_origin("edge-0123456789abcdef");
  request.mutable_turn()->set_history_page_size(2);
  request.mutable_turn()->set_reply_model("sim-1");
  request.mutable_turn()->set_reply_client_message_id_prefix("reply:");
  v1::AppendMessageResponse response;
  ASSERT_TRUE(Append(request, &response).ok());
  ASSERT_TRUE(response.created());
  const v1::Message& three = response.message();
  EXPECT_EQ(three.content(), "three");
  EXPECT_EQ(three.parent_id(), two.id());
  EXPECT_EQ(three.role(), v1::ROLE_USER);
  EXPECT_EQ(three.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(three.model(), "requested-model");
  EXPECT_EQ(three.client_message_id(), "c-3");
  EXPECT_EQ(three.sha256(), common::Sha256Hex("three"));

  // The newest two of root → three, oldest first: the other branch is not in it.
  ASSERT_EQ(response.history_size(), 2);
  EXPECT_EQ(response.history(0).id(), two.id());
  EXPECT_EQ(response.history(0).content(), "two");
  EXPECT_EQ(response.history(1).id(), three.id());
  EXPECT_EQ(response.history(1).content(), "three");
  v1::ListMessagesRequest branch;
  branch.set_user_id(alice_);
  branch.set_conversation_id(conversation.id());
  branch.set_leaf_message_id(three.id());
  branch.set_page_size(2);
  branch.set_newest(true);
  v1::ListMessagesResponse listed;
  ASSERT_TRUE(ListMessages(branch, &listed).ok());
  ASSERT_EQ(listed.messages_size(), 2);
  EXPECT_EQ(listed.messages(0).SerializeAsString(), response.history(0).SerializeAsString());
  EXPECT_EQ(listed.messages(1).SerializeAsString(), response.history(1).SerializeAsString());

  ASSERT_TRUE(response.has_reply());
  const v1::Message& reply = response.reply();
  EXPECT_EQ(reply.conversation_id(), conversation.id());
  EXPECT_EQ(reply.parent_id(), three.id());
  EXPECT_EQ(reply.role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(reply.status(), v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(reply.model(), "sim-1");
  EXPECT_EQ(reply.client_message_id(), "reply:" + three.id());
  EXPECT_EQ(reply.content(), "");
  EXPECT_EQ(reply.last_seq(), 0);
  EXPECT_NE(reply.id(), three.id());
  EXPECT_GT(reply.create_time().seconds(), 0);

  // Watchers hear of the message, then of the reply's start, both from the same origin.
  v1::WatchConversationResponse added = watch.Next();
  ASSERT_TRUE(added.event().has_message_added()) << added.DebugString();
  EXPECT_EQ(added.event().message_added().message().id(), three.id());
  EXPECT_EQ(added.event().message_added().origin(), "edge-0123456789abcdef");
  v1::WatchConversationResponse started = watch.Next();
  ASSERT_TRUE(started.event().has_message_added()) << started.DebugString();
  EXPECT_EQ(started.event().message_added().message().id(), reply.id());
  EXPECT_EQ(started.event().message_added().message().status(), v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(started.event().message_added().origin(), "edge-0123456789abcdef");

  // The reply is what an append of it would have opened: a write stream fills and ends it.
  StreamResult written = WriteStream(alice_, reply.id(), {{1, "Three "}, {2, "it is"}}, true);
  ASSERT_TRUE(written.status.ok()) << written.status.error_message();
  EXPECT_TRUE(written.finished);
  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, reply.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "Three it is");
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.sha256(), written.sha256);
  EXPECT_EQ(stored.model(), "sim-1");
  EXPECT_THAT(ContentsOf(alice_, conversation.id()),
              ElementsAre("one", "two", "another branch", "three", "Three it is"));

  // Its client message id keys it, as the reply an append of that id opens.
  v1::AppendMessageRequest open_reply;
  open_reply.set_user_id(alice_);
  open_reply.set_conversation_id(conversation.id());
  open_reply.set_parent_id(three.id());
  open_reply.set_role(v1::ROLE_ASSISTANT);
  open_reply.set_status(v1::MESSAGE_STATUS_STREAMING);
  open_reply.set_client_message_id("reply:" + three.id());
  v1::AppendMessageResponse found;
  ASSERT_TRUE(Append(open_reply, &found).ok());
  EXPECT_FALSE(found.created());
  EXPECT_EQ(found.message().id(), reply.id());

  // A repeat of the message returns it alone: no history, no second reply.
  v1::AppendMessageResponse repeat;
  ASSERT_TRUE(Append(request, &repeat).ok());
  EXPECT_FALSE(repeat.created());
  EXPECT_EQ(repeat.message().id(), three.id());
  EXPECT_EQ(repeat.history_size(), 0);
  EXPECT_FALSE(repeat.has_reply());
  EXPECT_EQ(ContentsOf(alice_, conversation.id()).size(), 5u);

  // Without a size, the history is as ListMessages's default page: here the whole branch.
  request.clear_parent_id();
  request.set_client_message_id("c-4");
  request.mutable_turn()->clear_history_page_size();
  v1::AppendMessageResponse four;
  ASSERT_TRUE(Append(request, &four).ok());
  ASSERT_TRUE(four.created());
  // Appended after the conversation's latest message: the reply the first turn stored.
  EXPECT_EQ(four.message().parent_id(), reply.id());
  std::vector<std::string> history;
  for (const v1::Message& message : four.history()) {
    history.push_back(message.content());
  }
  EXPECT_THAT(history, ElementsAre("one", "two", "three", "Three it is", "three"));
}

// The first message of a client-named conversation starts its turn too: the conversation, the
// message and the reply are stored together, and watches of the name follow them.
TEST_P(ConformanceTest, ATurnStartCreatesAClientNamedConversationWithItsMessageAndReply) {
  ConversationWatch watch(stub_, alice_, "turn-named", /*by_name=*/true);
  ASSERT_TRUE(watch.Next().has_ready());
  v1::AppendMessageRequest request = NamedAppend(alice_, "turn-named", "hello", "c-1");
  request.set_conversation_title("hello");
  request.mutable_turn()->set_history_page_size(20);
  request.mutable_turn()->set_reply_client_message_id_prefix("reply:");
  v1::AppendMessageResponse response;
  ASSERT_TRUE(Append(request, &response).ok());
  ASSERT_TRUE(response.created());
  ASSERT_EQ(response.history_size(), 1);
  EXPECT_EQ(response.history(0).id(), response.message().id());
  ASSERT_TRUE(response.has_reply());
  EXPECT_EQ(response.reply().conversation_id(), response.message().conversation_id());
  EXPECT_EQ(response.reply().parent_id(), response.message().id());
  EXPECT_EQ(response.reply().model(), "");

  v1::Conversation named;
  ASSERT_TRUE(GetByName(alice_, "turn-named", &named).ok());
  EXPECT_EQ(named.id(), response.message().conversation_id());
  EXPECT_EQ(named.title(), "hello");
  v1::WatchConversationResponse created = watch.Next();
  ASSERT_TRUE(created.event().has_message_added()) << created.DebugString();
  EXPECT_EQ(created.event().message_added().message().id(), response.message().id());
  EXPECT_EQ(created.event().message_added().created_client_conversation_id(), "turn-named");
  v1::WatchConversationResponse started = watch.Next();
  ASSERT_TRUE(started.event().has_message_added()) << started.DebugString();
  EXPECT_EQ(started.event().message_added().message().id(), response.reply().id());
  EXPECT_EQ(started.event().message_added().created_client_conversation_id(), "");

  // The same first message again (a resend after a lost answer) finds both, creating nothing.
  v1::AppendMessageResponse repeat;
  ASSERT_TRUE(Append(request, &repeat).ok());
  EXPECT_FALSE(repeat.created());
  EXPECT_EQ(repeat.message().id(), response.message().id());
  EXPECT_FALSE(repeat.has_reply());
  EXPECT_EQ(ContentsOf(alice_, named.id()).size(), 2u);
}

TEST_P(ConformanceTest, ATurnStartIsRefusedForAnythingButAUserMessageAndStoresNothingWhenRefused) {
  const v1::Conversation conversation = Create(alice_);
  const auto turn_request = [&] {
    v1::AppendMessageRequest request;
    request.set_user_id(alice_);
    request.set_conversation_id(conversation.id());
    request.set_role(v1::ROLE_USER);
    request.set_content("hi");
    request.mutable_turn()->set_reply_client_message_id_prefix("reply:");
    return request;
  };
  v1::AppendMessageResponse response;
  v1::AppendMessageRequest assistant = turn_request();
  assistant.set_role(v1::ROLE_ASSISTANT);
  EXPECT_EQ(Append(assistant, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AppendMessageRequest streaming = turn_request();
  streaming.set_role(v1::ROLE_ASSISTANT);
  streaming.set_status(v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(Append(streaming, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AppendMessageRequest long_prefix = turn_request();
  // With the reply's id of 32 hex digits, its client message id would pass 128 bytes.
  long_prefix.mutable_turn()->set_reply_client_message_id_prefix(std::string(97, 'p'));
  EXPECT_EQ(Append(long_prefix, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AppendMessageRequest nul_prefix = turn_request();
  nul_prefix.mutable_turn()->set_reply_client_message_id_prefix(std::string("a\0b", 3));
  EXPECT_EQ(Append(nul_prefix, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AppendMessageRequest long_model = turn_request();
  long_model.mutable_turn()->set_reply_model(std::string(129, 'm'));
  EXPECT_EQ(Append(long_model, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AppendMessageRequest negative = turn_request();
  negative.mutable_turn()->set_history_page_size(-1);
  EXPECT_EQ(Append(negative, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Someone else's conversation, or a parent not in it: nothing at all is stored.
  v1::AppendMessageRequest bobs = turn_request();
  bobs.set_user_id(bob_);
  EXPECT_EQ(Append(bobs, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::AppendMessageRequest orphan = turn_request();
  orphan.set_parent_id("0123456789abcdef0123456789abcdef");
  EXPECT_EQ(Append(orphan, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(ContentsOf(alice_, conversation.id()).empty());

  // At the longest prefix the reply's client message id is 128 bytes, and accepted.
  v1::AppendMessageRequest longest = turn_request();
  longest.mutable_turn()->set_reply_client_message_id_prefix(std::string(96, 'p'));
  ASSERT_TRUE(Append(longest, &response).ok());
  EXPECT_EQ(response.reply().client_message_id().size(), 128u);
}

// A client's name of a conversation not stored yet: its watch is ready at once and follows the
// conversation from the message that creates it; another user's same name is not it.
TEST_P(ConformanceTest, ATurnStartedOnAWriteStreamStreamsItsReplyInTheSameCall) {
  const v1::Conversation conversation = Create(alice_);
  const v1::Message one = Append(alice_, conversation.id(), "one");
  auto start_frame = [&](const std::string& client_message_id) {
    v1::WriteMessageStreamRequest frame = StartFrame(alice_, conversation.id(), "two");
    frame.mutable_start()->set_client_message_id(client_message_id);
    frame.mutable_start()->mutable_turn()->set_history_page_size(10);
    frame.mutable_start()->mutable_turn()->set_reply_client_message_id_prefix("reply:");
    return frame;
  };

  grpc::ClientContext context;
  auto stream = stub_->WriteMessageStream(&context);
  ASSERT_TRUE(stream->Write(start_frame("c-2")));
  // The first acknowledgement is the AppendMessage's answer: the message, its branch, the reply.
  v1::WriteMessageStreamResponse answer;
  ASSERT_TRUE(stream->Read(&answer));
  ASSERT_TRUE(answer.has_started()) << answer.DebugString();
  EXPECT_EQ(answer.durable_seq(), 0);
  const v1::AppendMessageResponse started = answer.started();
  ASSERT_TRUE(started.created());
  EXPECT_EQ(started.message().content(), "two");
  EXPECT_EQ(started.message().parent_id(), one.id());
  ASSERT_EQ(started.history_size(), 2);
  EXPECT_EQ(started.history(0).id(), one.id());
  EXPECT_EQ(started.history(1).id(), started.message().id());
  ASSERT_TRUE(started.has_reply());
  const v1::Message reply = started.reply();
  EXPECT_EQ(reply.parent_id(), started.message().id());
  EXPECT_EQ(reply.status(), v1::MESSAGE_STATUS_STREAMING);
  EXPECT_EQ(reply.client_message_id(), "reply:" + started.message().id());

  // The same stream goes on as if opened on the reply.
  v1::WriteMessageStreamRequest frame;
  frame.mutable_delta()->set_seq(1);
  frame.mutable_delta()->set_text("Two ");
  ASSERT_TRUE(stream->Write(frame));
  frame.mutable_delta()->set_seq(2);
  frame.mutable_delta()->set_text("it is");
  ASSERT_TRUE(stream->Write(frame));
  frame.mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
  frame.mutable_finish()->set_finish_reason("stop");
  ASSERT_TRUE(stream->Write(frame));
  StreamResult written = EndStream(*stream);
  ASSERT_TRUE(written.status.ok()) << written.status.error_message();
  EXPECT_TRUE(written.finished);
  EXPECT_EQ(written.acks.back(), 2);
  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, reply.id(), &stored).ok());
  EXPECT_EQ(stored.content(), "Two it is");
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.sha256(), written.sha256);
  EXPECT_THAT(ContentsOf(alice_, conversation.id()), ElementsAre("one", "two", "Two it is"));

  // The start again (a retry): the stored message alone, no reply, and the stream ends.
  grpc::ClientContext again_context;
  auto again = stub_->WriteMessageStream(&again_context);
  ASSERT_TRUE(again->Write(start_frame("c-2")));
  ASSERT_TRUE(again->Read(&answer));
  ASSERT_TRUE(answer.has_started());
  EXPECT_FALSE(answer.started().created());
  EXPECT_EQ(answer.started().message().id(), started.message().id());
  EXPECT_FALSE(answer.started().has_reply());
  EXPECT_FALSE(again->Read(&answer));
  EXPECT_TRUE(again->Finish().ok());
  EXPECT_THAT(ContentsOf(alice_, conversation.id()), ElementsAre("one", "two", "Two it is"));
}

TEST_P(ConformanceTest, AReplyStartedOnAWriteStreamThatBrokeOffIsReopenedByItsId) {
  const v1::Conversation conversation = Create(alice_);
  grpc::ClientContext context;
  auto stream = stub_->WriteMessageStream(&context);
  v1::WriteMessageStreamRequest frame = StartFrame(alice_, conversation.id(), "hello");
  ASSERT_TRUE(stream->Write(frame));
  v1::WriteMessageStreamResponse answer;
  ASSERT_TRUE(stream->Read(&answer));
  ASSERT_TRUE(answer.started().has_reply());
  const std::string reply_id = answer.started().reply().id();
  frame.mutable_delta()->set_seq(1);
  frame.mutable_delta()->set_text("Hel");
  ASSERT_TRUE(stream->Write(frame));
  // Half-closed without `finish`: the reply stays streaming, its first delta durable.
  StreamResult broken = EndStream(*stream);
  ASSERT_TRUE(broken.status.ok()) << broken.status.error_message();
  EXPECT_EQ(broken.acks.back(), 1);

  StreamResult rest = WriteStream(alice_, reply_id, {{1, "Hel"}, {2, "lo"}}, true);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  EXPECT_EQ(rest.acks.front(), 1);  // where the store stood when it opened
  EXPECT_TRUE(rest.finished);
  EXPECT_THAT(ContentsOf(alice_, conversation.id()), ElementsAre("hello", "Hello"));
}

TEST_P(ConformanceTest, AWriteStreamStartIsRefusedWithoutATurnOrForAnythingButAUserMessage) {
  const v1::Conversation conversation = Create(alice_);
  auto refused = [&](const std::function<void(v1::AppendMessageRequest&)>& change) {
    grpc::ClientContext context;
    auto stream = stub_->WriteMessageStream(&context);
    v1::WriteMessageStreamRequest frame = StartFrame(alice_, conversation.id(), "x");
    change(*frame.mutable_start());
    stream->Write(frame);
    return EndStream(*stream).status.error_code();
  };
  EXPECT_EQ(refused([](v1::AppendMessageRequest& start) { start.clear_turn(); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused([](v1::AppendMessageRequest& start) { start.set_role(v1::ROLE_ASSISTANT); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused([](v1::AppendMessageRequest& start) { start.clear_user_id(); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused([&](v1::AppendMessageRequest& start) { start.set_user_id(bob_); }),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(ContentsOf(alice_, conversation.id()).empty());
}

TEST_P(ConformanceTest, ATurnThatGoesOnWhereItsCallerLeftTheBranchGetsItsNewMessageAlone) {
  const v1::Conversation conversation = Create(alice_);
  const v1::Message one = Append(alice_, conversation.id(), "one");
  const v1::Message two = Append(alice_, conversation.id(), "two", one.id());
  auto start = [&](const std::string& content, const std::string& known_leaf) {
    v1::AppendMessageRequest request;
    request.set_user_id(alice_);
    request.set_conversation_id(conversation.id());
    request.set_role(v1::ROLE_USER);
    request.set_content(content);
    request.mutable_turn()->set_reply_model("sim-1");
    request.mutable_turn()->set_known_branch_leaf_id(known_leaf);
    v1::AppendMessageResponse response;
    EXPECT_TRUE(Append(request, &response).ok());
    return response;
  };
  // The caller holds the branch up to `two`, the parent of the new message.
  const v1::AppendMessageResponse three = start("three", two.id());
  ASSERT_TRUE(three.created());
  EXPECT_TRUE(three.history_continues());
  ASSERT_EQ(three.history_size(), 1);
  EXPECT_EQ(three.history(0).id(), three.message().id());
  EXPECT_EQ(three.history(0).content(), "three");
  ASSERT_TRUE(three.has_reply());

  // A branch that moved on since (the reply to three came after `two`) is sent whole.
  const v1::AppendMessageResponse four = start("four", two.id());
  EXPECT_FALSE(four.history_continues());
  std::vector<std::string> history;
  for (const v1::Message& message : four.history()) {
    history.push_back(message.content());
  }
  EXPECT_THAT(history, ElementsAre("one", "two", "three", "", "four"));
  EXPECT_EQ(four.history(3).id(), three.reply().id());

  // A leaf that is no message of the conversation is only a branch that moved on.
  EXPECT_FALSE(start("five", "0123456789abcdef0123456789abcdef").history_continues());
}

TEST_P(ConformanceTest, AWatchOfANameNotStoredYetFollowsItFromItsFirstMessage) {
  ConversationWatch watch(stub_, alice_, "conv-watched", /*by_name=*/true);
  v1::WatchConversationResponse ready = watch.Next();
  ASSERT_TRUE(ready.has_ready()) << ready.DebugString();
  EXPECT_EQ(ready.ready().conversation_id(), "");
  ConversationWatch bobs(stub_, bob_, "conv-watched", /*by_name=*/true);
  ASSERT_TRUE(bobs.Next().has_ready());
  // Signals reach it before anything is stored (Bob's watch of his own name does not get them).
  ASSERT_TRUE(
      PublishSignalByName(stub_, alice_, "conv-watched", v1::SIGNAL_KIND_TYPING, "early").ok());
  v1::WatchConversationResponse early = watch.Next();
  ASSERT_TRUE(early.event().has_signal()) << early.DebugString();
  EXPECT_EQ(early.event().signal().payload(), "early");
  EXPECT_EQ(early.event().conversation_id(), "");
  EXPECT_EQ(early.event().user_id(), alice_);
  EXPECT_EQ(early.event().client_conversation_id(), "conv-watched");

  auto append_named = [&](const std::string& user, const std::string& content) {
    v1::AppendMessageRequest request;
    request.set_user_id(user);
    request.set_client_conversation_id("conv-watched");
    request.set_role(v1::ROLE_USER);
    request.set_content(content);
    v1::AppendMessageResponse response;
    EXPECT_TRUE(Append(request, &response).ok());
    return response.message();
  };
  const v1::Message first = append_named(alice_, "first");
  v1::WatchConversationResponse created = watch.Next();
  ASSERT_TRUE(created.event().has_message_added()) << created.DebugString();
  EXPECT_EQ(created.event().conversation_id(), first.conversation_id());
  EXPECT_EQ(created.event().message_added().message().id(), first.id());
  EXPECT_EQ(created.event().message_added().created_client_conversation_id(), "conv-watched");
  EXPECT_EQ(created.event().message_added().created_for_user_id(), alice_);
  // From then on it is that conversation's watch, and a signal by the name is one in it.
  ASSERT_TRUE(PublishSignalByName(stub_, alice_, "conv-watched", v1::SIGNAL_KIND_JOIN, "j").ok());
  const v1::Message second = append_named(alice_, "second");
  v1::WatchConversationResponse join = watch.Next();
  ASSERT_TRUE(join.event().has_signal()) << join.DebugString();
  EXPECT_EQ(join.event().conversation_id(), first.conversation_id());
  v1::WatchConversationResponse added = watch.Next();
  ASSERT_TRUE(added.event().has_message_added()) << added.DebugString();
  EXPECT_EQ(added.event().message_added().message().id(), second.id());
  EXPECT_EQ(added.event().message_added().created_client_conversation_id(), "");

  // Bob's watch saw nothing of Alice's: its first event is his own conversation's creation.
  const v1::Message bobs_first = append_named(bob_, "bob's");
  v1::WatchConversationResponse bobs_created = bobs.Next();
  ASSERT_TRUE(bobs_created.event().has_message_added()) << bobs_created.DebugString();
  EXPECT_EQ(bobs_created.event().message_added().message().id(), bobs_first.id());
  EXPECT_NE(bobs_first.conversation_id(), first.conversation_id());

  // Stored: a watch by the name is of that conversation from the start.
  ConversationWatch later(stub_, alice_, "conv-watched", /*by_name=*/true);
  v1::WatchConversationResponse later_ready = later.Next();
  ASSERT_TRUE(later_ready.has_ready());
  EXPECT_EQ(later_ready.ready().conversation_id(), first.conversation_id());
  ConversationWatch nameless(stub_, alice_, "", /*by_name=*/true);
  EXPECT_FALSE(nameless.Next().has_ready());
  EXPECT_EQ(nameless.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ConformanceTest, AnAbandonedReplyEndsInterruptedWithItsStoredTextWhileAHeldOneLives) {
  ConversationService::Options options;
  // Seconds, not milliseconds: the held reply's first lease, taken when it is appended, must not
  // lapse before its write stream is open and renewing it, however loaded the machine.
  options.stream_lease = absl::Seconds(2);
  std::unique_ptr<Serving> leased = Serve(*store_, options);
  v1::ConversationService::Stub* stub = leased->stub.get();
  stub_ = stub;
  const v1::Conversation conversation = Create(alice_);
  // Appended first, so its first lease lapses before the abandoned one's.
  const v1::Message held = Append(alice_, conversation.id(), "", "", v1::MESSAGE_STATUS_STREAMING);
  grpc::ClientContext held_context;
  auto held_stream = stub->WriteMessageStream(&held_context);
  v1::WriteMessageStreamRequest frame;
  frame.mutable_open()->set_user_id(alice_);
  frame.mutable_open()->set_message_id(held.id());
  ASSERT_TRUE(held_stream->Write(frame));
  v1::WriteMessageStreamResponse ack;
  ASSERT_TRUE(held_stream->Read(&ack));  // the stream is open and holds the lease

  ConversationWatch watch(stub, alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  const v1::Message abandoned =
      Append(alice_, conversation.id(), "", held.id(), v1::MESSAGE_STATUS_STREAMING);
  // PostgreSQL delivers notifications after the fact: the held reply's start,
  // committed before the watch began, may still arrive first.
  for (v1::WatchConversationResponse next = watch.Next();
       next.event().message_added().message().id() != abandoned.id(); next = watch.Next()) {
    ASSERT_TRUE(next.event().has_message_added()) << next.DebugString();
  }
  // The writer sends two deltas and goes away without `finish`.
  ASSERT_TRUE(
      WriteStream(alice_, abandoned.id(), {{1, "half "}, {2, "a reply"}}, false).status.ok());

  grpc::ClientContext watch_context;
  v1::WatchMessageRequest request;
  request.set_user_id(alice_);
  request.set_message_id(abandoned.id());
  auto reader = stub->WatchMessage(&watch_context, request);
  WatchResult result;
  ReadWatch(*reader, result);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text, "half a reply");
  ASSERT_TRUE(result.finished);
  EXPECT_EQ(result.finish.status(), v1::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(result.finish.finish_reason(), "lease_expired");
  EXPECT_EQ(result.finish.sha256(), common::Sha256Hex("half a reply"));

  v1::WatchConversationResponse ended = watch.Next();
  ASSERT_TRUE(ended.event().has_reply_finished()) << ended.DebugString();
  EXPECT_EQ(ended.event().reply_finished().message_id(), abandoned.id());
  EXPECT_EQ(ended.event().reply_finished().status(), v1::MESSAGE_STATUS_INTERRUPTED);
  EXPECT_EQ(ended.event().reply_finished().sha256(), common::Sha256Hex("half a reply"));

  // The held reply outlived its first lease: its writer renewed it.
  v1::Message stored;
  ASSERT_TRUE(GetMessage(alice_, held.id(), &stored).ok());
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_STREAMING);
  frame.mutable_delta()->set_seq(1);
  frame.mutable_delta()->set_text("still here");
  ASSERT_TRUE(held_stream->Write(frame));
  frame.mutable_finish()->set_status(v1::MESSAGE_STATUS_COMPLETE);
  ASSERT_TRUE(held_stream->Write(frame));
  held_stream->WritesDone();
  while (held_stream->Read(&ack)) {
  }
  ASSERT_TRUE(held_stream->Finish().ok());
  ASSERT_TRUE(GetMessage(alice_, held.id(), &stored).ok());
  EXPECT_EQ(stored.status(), v1::MESSAGE_STATUS_COMPLETE);
  EXPECT_EQ(stored.content(), "still here");
}

INSTANTIATE_TEST_SUITE_P(Sqlite, ConformanceTest, ::testing::Values("sqlite"));
INSTANTIATE_TEST_SUITE_P(Postgres, ConformanceTest, ::testing::Values("postgresql"));

// Replicas sharing one PostgreSQL: a watch on one sees what happens on another.
using CrossReplicaTest = ConformanceTest;

TEST_P(CrossReplicaTest, AWatchOnOneReplicaSeesMessagesAndSignalsFromAnother) {
  std::unique_ptr<Store> second_store = OpenTestStore(GetParam(), dir_);
  ASSERT_NE(second_store, nullptr);
  std::unique_ptr<Serving> second = Serve(*second_store);
  const v1::Conversation conversation = Create(alice_);
  ConversationWatch watch(second->stub.get(), alice_, conversation.id());
  ASSERT_TRUE(watch.Next().has_ready());
  ASSERT_TRUE(
      PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_TYPING, "edge-a/1", "x")
          .ok());
  v1::WatchConversationResponse typing = watch.Next();
  ASSERT_TRUE(typing.event().has_signal()) << typing.DebugString();
  EXPECT_EQ(typing.event().signal().origin(), "edge-a/1");
  // A message too large for a notification arrives without its content.
  const std::string big(20000, 'b');
  const v1::Message message = Append(alice_, conversation.id(), big);
  v1::WatchConversationResponse added = watch.Next();
  ASSERT_TRUE(added.event().has_message_added()) << added.DebugString();
  EXPECT_EQ(added.event().message_added().message().id(), message.id());
  EXPECT_TRUE(added.event().message_added().content_omitted());
  EXPECT_EQ(added.event().message_added().message().content(), "");
  // Each event arrives once, though the replica that committed it hears it too.
  ASSERT_TRUE(
      PublishSignal(stub_, alice_, conversation.id(), v1::SIGNAL_KIND_LEAVE, "edge-a/1", "").ok());
  v1::WatchConversationResponse leave = watch.Next();
  ASSERT_TRUE(leave.event().has_signal()) << leave.DebugString();
  EXPECT_EQ(leave.event().signal().kind(), v1::SIGNAL_KIND_LEAVE);
}

TEST_P(CrossReplicaTest, AWatchOfANameOnOneReplicaFollowsItsCreationOnAnother) {
  std::unique_ptr<Store> second_store = OpenTestStore(GetParam(), dir_);
  ASSERT_NE(second_store, nullptr);
  std::unique_ptr<Serving> second = Serve(*second_store);
  ConversationWatch watch(second->stub.get(), alice_, "conv-elsewhere", /*by_name=*/true);
  ASSERT_TRUE(watch.Next().has_ready());
  ASSERT_TRUE(
      PublishSignalByName(stub_, alice_, "conv-elsewhere", v1::SIGNAL_KIND_TYPING, "early").ok());
  v1::WatchConversationResponse early = watch.Next();
  ASSERT_TRUE(early.event().has_signal()) << early.DebugString();
  EXPECT_EQ(early.event().signal().payload(), "early");
  v1::AppendMessageRequest request;
  request.set_user_id(alice_);
  request.set_client_conversation_id("conv-elsewhere");
  request.set_role(v1::ROLE_USER);
  request.set_content("made on the first replica");
  v1::AppendMessageResponse response;
  ASSERT_TRUE(Append(request, &response).ok());
  v1::WatchConversationResponse created = watch.Next();
  ASSERT_TRUE(created.event().has_message_added()) << created.DebugString();
  EXPECT_EQ(created.event().conversation_id(), response.message().conversation_id());
  // A typing signal, old already when it reaches the other replica, is not delivered there; a
  // fresh one is.
  const std::string& conversation_id = response.message().conversation_id();
  EXPECT_FALSE(PublishSignal(stub_, alice_, conversation_id, v1::SIGNAL_KIND_TYPING, "e/1", "old",
                             absl::Now() - absl::Hours(1))
                   .ok());
  ASSERT_TRUE(
      PublishSignal(stub_, alice_, conversation_id, v1::SIGNAL_KIND_TYPING, "e/1", "fresh").ok());
  v1::WatchConversationResponse typing = watch.Next();
  ASSERT_TRUE(typing.event().has_signal()) << typing.DebugString();
  EXPECT_EQ(typing.event().signal().payload(), "fresh");
}

INSTANTIATE_TEST_SUITE_P(Postgres, CrossReplicaTest, ::testing::Values("postgresql"));

// A database written by the release before client-named conversations (schema
// version 1, with a conversation in it) is upgraded in place when a store opens it.
class SchemaUpgradeTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    spec_ = StoreSpec(GetParam(), dir_);
    if (GetParam() == "postgresql") {
      // A database of its own: the shared one is already at the newest schema.
      server_url_ = spec_;
      database_ = UniqueUser("parley_upgrade");
      std::replace(database_.begin(), database_.end(), '-', '_');
      ASSERT_TRUE(ExecPostgres(server_url_, {"CREATE DATABASE " + database_}).ok());
      spec_ = server_url_.substr(0, server_url_.rfind('/') + 1) + database_;
    } else {
      std::filesystem::create_directories(dir_ + "/data");
    }
  }

  void TearDown() override {
    if (!database_.empty()) {
      EXPECT_TRUE(
          ExecPostgres(server_url_, {"DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)"})
              .ok());
    }
    RemoveDir(dir_);
  }

  static const char* Password() {
    const char* password = std::getenv("PARLEY_STORE_PASSWORD");
    return password != nullptr ? password : "";
  }

  static absl::Status ExecPostgres(const std::string& url,
                                   const std::vector<std::string>& statements) {
    const char* keywords[] = {"dbname", "password", nullptr};
    const char* values[] = {url.c_str(), Password(), nullptr};
    PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    absl::Status status;
    if (PQstatus(conn) != CONNECTION_OK) {
      status = absl::UnavailableError(PQerrorMessage(conn));
    }
    for (size_t i = 0; status.ok() && i < statements.size(); ++i) {
      PGresult* result = PQexec(conn, statements[i].c_str());
      if (PQresultStatus(result) != PGRES_COMMAND_OK && PQresultStatus(result) != PGRES_TUPLES_OK) {
        status = absl::InternalError(absl::StrCat(statements[i], ": ", PQerrorMessage(conn)));
      }
      PQclear(result);
    }
    PQfinish(conn);
    return status;
  }

  static absl::Status ExecSqlite(const std::string& path,
                                 const std::vector<std::string>& statements) {
    sqlite3* db = nullptr;
    absl::Status status;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      status = absl::UnavailableError(sqlite3_errmsg(db));
    }
    for (size_t i = 0; status.ok() && i < statements.size(); ++i) {
      if (sqlite3_exec(db, statements[i].c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        status = absl::InternalError(absl::StrCat(statements[i], ": ", sqlite3_errmsg(db)));
      }
    }
    sqlite3_close(db);
    return status;
  }

  // The schema as release `version` created it (its first `version` migrations), in a fresh
  // database, followed by `rows`.
  absl::Status WriteDatabase(size_t version, const std::vector<std::string>& rows) {
    const bool postgres = GetParam() == "postgresql";
    std::vector<std::string> statements = {
        "CREATE TABLE schema_version (version INTEGER NOT NULL)"};
    const std::vector<std::vector<std::string>> migrations =
        SchemaMigrations(postgres ? SqlDialect{.serial_key = "BIGSERIAL PRIMARY KEY",
                                               .int64 = "BIGINT",
                                               .keyed_table = ""}
                                  : SqlDialect{.serial_key = "INTEGER PRIMARY KEY AUTOINCREMENT",
                                               .int64 = "INTEGER",
                                               .keyed_table = " WITHOUT ROWID"});
    for (size_t v = 0; v < version; ++v) {
      statements.insert(statements.end(), migrations[v].begin(), migrations[v].end());
    }
    statements.push_back(
        absl::StrCat("INSERT INTO schema_version (version) VALUES (", version, ")"));
    statements.insert(statements.end(), rows.begin(), rows.end());
    return postgres ? ExecPostgres(spec_, statements)
                    : ExecSqlite(dir_ + "/data/parley.db", statements);
  }

  static std::string OldConversationRow() {
    return absl::StrCat(
        "INSERT INTO conversations (id, owner, title, metadata,"
        " origin_client_message_id, create_time, update_time) VALUES ('",
        kOldConversation, "', 'old-user', 'Before the upgrade', '{}', NULL,",
        " 1700000000000000, 1700000000000000)");
  }

  // Schema version 1 exactly as that release created it, plus one user's chat.
  absl::Status WriteVersionOneDatabase() {
    return WriteDatabase(
        1,
        {OldConversationRow(),
         absl::StrCat("INSERT INTO messages (id, conversation_id, parent_id, role, content, status,"
                      " finish_reason, prompt_tokens, completion_tokens, usage_estimated, model,"
                      " client_message_id, last_seq, create_time, update_time) VALUES ('",
                      kOldMessage, "', '", kOldConversation,
                      "', NULL, 2, 'kept words', 2, '', 0, 0, 0, '', NULL, 0,"
                      " 1700000000000000, 1700000000000000)")});
  }

  // Schema version 4, whose replies kept their text twice (row and delta log): one still
  // streaming ("Hello" so far, in two deltas) and one that ended ("abc").
  absl::Status WriteVersionFourDatabase() {
    auto message = [](const char* id, const char* content, int status) {
      return absl::StrCat(
          "INSERT INTO messages (id, conversation_id, parent_id, role, content, status,"
          " finish_reason, prompt_tokens, completion_tokens, usage_estimated, model,"
          " client_message_id, last_seq, create_time, update_time) VALUES ('",
          id, "', '", kOldConversation, "', NULL, 3, '", content, "', ", status,
          ", '', 0, 0, 0, '', NULL, 2, 1700000000000000, 1700000000000000)");
    };
    return WriteDatabase(
        4, {OldConversationRow(), message(kOldStreaming, "Hello", 1), message(kOldEnded, "abc", 2),
            absl::StrCat("INSERT INTO message_deltas (message_id, seq, text) VALUES ('",
                         kOldStreaming, "', 1, 'Hel'), ('", kOldStreaming, "', 2, 'lo'), ('",
                         kOldEnded, "', 1, 'ab'), ('", kOldEnded, "', 2, 'c')")});
  }

  static std::string Tail(Store& store, const std::string& id, int64_t after_seq) {
    absl::StatusOr<MessageTail> tail = store.ReadTail("old-user", id, after_seq);
    EXPECT_TRUE(tail.ok()) << tail.status();
    return tail.ok() ? tail->text : "<error>";
  }

  std::unique_ptr<Store> Open() {
    absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(spec_, Password());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static constexpr char kOldConversation[] = "0123456789abcdef0123456789abcdef";
  static constexpr char kOldMessage[] = "fedcba9876543210fedcba9876543210";
  static constexpr char kOldStreaming[] = "11111111111111111111111111111111";
  static constexpr char kOldEnded[] = "22222222222222222222222222222222";

  std::string dir_;
  std::string spec_;
  std::string server_url_;
  std::string database_;
};

TEST_P(SchemaUpgradeTest, AVersionOneDatabaseKeepsItsDataAndGainsClientNames) {
  ASSERT_TRUE(WriteVersionOneDatabase().ok());
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);

  absl::StatusOr<v1::Conversation> old = store->GetConversation("old-user", kOldConversation);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->title(), "Before the upgrade");
  EXPECT_EQ(old->client_conversation_id(), "");
  v1::ListMessagesRequest list;
  list.set_user_id("old-user");
  list.set_conversation_id(kOldConversation);
  list.set_page_size(10);
  absl::StatusOr<MessagePage> messages = store->ListMessages(list);
  ASSERT_TRUE(messages.ok()) << messages.status();
  ASSERT_EQ(messages->messages.size(), 1u);
  EXPECT_EQ(messages->messages[0].content(), "kept words");
  // A message that ended before checksums were stored gets its checksum on read (sha256sum).
  EXPECT_EQ(messages->messages[0].sha256(),
            "0967696d57310c603e93d981bcde67d58b51276ad492e545934bccc1187642e5");

  v1::AppendMessageRequest append;
  append.set_user_id("old-user");
  append.set_role(v1::ROLE_USER);
  append.set_status(v1::MESSAGE_STATUS_COMPLETE);
  append.set_conversation_id(kOldConversation);
  append.set_content("after the upgrade");
  absl::StatusOr<AppendResult> continued = store->AppendMessage(append);
  ASSERT_TRUE(continued.ok()) << continued.status();
  EXPECT_EQ(continued->message.parent_id(), kOldMessage);

  append.clear_conversation_id();
  append.set_client_conversation_id("conv-123");
  append.set_content("named");
  absl::StatusOr<AppendResult> named = store->AppendMessage(append);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_NE(named->message.conversation_id(), kOldConversation);

  // Opening again applies nothing twice, and the name still finds its conversation.
  store.reset();
  store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<v1::Conversation> found =
      store->GetClientNamedConversation("old-user", "conv-123");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->id(), named->message.conversation_id());
  absl::StatusOr<AppendResult> again = store->AppendMessage(append);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->message.conversation_id(), found->id());
  absl::StatusOr<ConversationPage> page = store->ListConversations("old-user", 10, "");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->conversations.size(), 2u);
}

TEST_P(SchemaUpgradeTest, AVersionFourDatabaseKeepsEveryReplysTextAndEverySeqsPlaceInIt) {
  ASSERT_TRUE(WriteVersionFourDatabase().ok());
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);

  absl::StatusOr<v1::Message> ended = store->GetMessage("old-user", kOldEnded);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->content(), "abc");
  EXPECT_EQ(ended->sha256(), kSha256OfAbc);
  EXPECT_EQ(Tail(*store, kOldEnded, 0), "abc");
  EXPECT_EQ(Tail(*store, kOldEnded, 1), "c");
  EXPECT_EQ(Tail(*store, kOldEnded, 2), "");

  absl::StatusOr<v1::Message> streaming = store->GetMessage("old-user", kOldStreaming);
  ASSERT_TRUE(streaming.ok()) << streaming.status();
  EXPECT_EQ(streaming->content(), "Hello");
  EXPECT_EQ(streaming->last_seq(), 2);
  EXPECT_EQ(Tail(*store, kOldStreaming, 1), "lo");

  // The reply goes on where it stood (a resent seq 2 is skipped) and ends with the whole text.
  std::vector<absl::StatusOr<int64_t>> appended =
      store->AppendDeltas({DeltaRun{kOldStreaming, 2, {"lo", ", world"}}});
  ASSERT_EQ(appended.size(), 1u);
  ASSERT_TRUE(appended[0].ok()) << appended[0].status();
  EXPECT_EQ(*appended[0], 3);
  v1::StreamFinish finish;
  finish.set_status(v1::MESSAGE_STATUS_COMPLETE);
  finish.set_finish_reason("stop");
  absl::StatusOr<v1::Message> finished = store->FinishMessage(kOldStreaming, finish);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->content(), "Hello, world");
  EXPECT_EQ(finished->sha256(), kSha256OfHelloWorld);

  // Opening again applies nothing twice.
  store.reset();
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Tail(*store, kOldStreaming, 0), "Hello, world");
  EXPECT_EQ(Tail(*store, kOldStreaming, 1), "lo, world");
  EXPECT_EQ(Tail(*store, kOldStreaming, 2), ", world");
  EXPECT_EQ(Tail(*store, kOldEnded, 1), "c");
  v1::ListMessagesRequest list;
  list.set_user_id("old-user");
  list.set_conversation_id(kOldConversation);
  list.set_page_size(10);
  absl::StatusOr<MessagePage> messages = store->ListMessages(list);
  ASSERT_TRUE(messages.ok()) << messages.status();
  ASSERT_EQ(messages->messages.size(), 2u);
  EXPECT_EQ(messages->messages[0].content(), "Hello, world");
  EXPECT_EQ(messages->messages[1].content(), "abc");
}

INSTANTIATE_TEST_SUITE_P(Sqlite, SchemaUpgradeTest, ::testing::Values("sqlite"));
INSTANTIATE_TEST_SUITE_P(Postgres, SchemaUpgradeTest, ::testing::Values("postgresql"));

}  // namespace
}  // namespace parley::persistence
