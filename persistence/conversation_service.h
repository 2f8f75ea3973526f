#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parley/persistence/v1/conversation_service.grpc.pb.h"
#include "persistence/delta_committer.h"
#include "persistence/metrics.h"
#include "persistence/store.h"
#include "persistence/stream_leases.h"
#include "persistence/thread_pool.h"
#include "persistence/watch_hub.h"
#include "prometheus/registry.h"

namespace parley::persistence {

// Input bounds; anything larger is INVALID_ARGUMENT.
inline constexpr size_t kMaxIdBytes = 128;              // user, client message and model ids
inline constexpr size_t kMaxTitleBytes = 256;           // conversation title
inline constexpr size_t kMaxContentBytes = 256 << 10;   // one appended message
inline constexpr size_t kMaxMetadataBytes = 16 << 10;   // sum of metadata keys and values
inline constexpr size_t kMaxDeltaBytes = 64 << 10;      // one streamed delta
inline constexpr size_t kMaxStreamedBytes = 1 << 20;    // a whole streamed message
inline constexpr size_t kMaxSignalPayloadBytes = 1024;  // a signal's opaque payload

// A client's name for a conversation (`client_conversation_id`): 1..kMaxIdBytes
// bytes of valid UTF-8 without control characters, so it can be logged, shown
// and compared byte for byte. INVALID_ARGUMENT naming `field` otherwise.
absl::Status CheckClientConversationId(absl::string_view name, absl::string_view field);

// `parley.persistence.v1.ConversationService` over a Store (gRPC callback
// API). Store calls run on the service's own pool; stream deltas go through
// one group committer; watchers are woken by the store's change notifications.
// Errors cross into gRPC here, once, with the canonical code.
class ConversationService final : public v1::ConversationService::CallbackService {
 public:
  struct Options {
    int store_threads = 64;
    // New calls that may wait for a store thread; the next one is answered RESOURCE_EXHAUSTED.
    // 0: no bound.
    size_t store_queue_limit = 1024;
    DeltaCommitter::Options commit;
    // How long a streaming reply outlives its writer before it is ended as
    // interrupted; zero or less: never.
    absl::Duration stream_lease = absl::Seconds(5);
    // A typing signal this old when it would reach a watcher is dropped.
    absl::Duration signal_max_age = absl::Seconds(3);
  };

  // `store` must outlive the service; the service must outlive the gRPC server.
  ConversationService(Store& store, std::shared_ptr<prometheus::Registry> registry,
                      Options options);
  ~ConversationService() override;

  grpc::ServerUnaryReactor* CreateConversation(grpc::CallbackServerContext* context,
                                               const v1::CreateConversationRequest* request,
                                               v1::CreateConversationResponse* response) override;
  grpc::ServerUnaryReactor* GetConversation(grpc::CallbackServerContext* context,
                                            const v1::GetConversationRequest* request,
                                            v1::GetConversationResponse* response) override;
  grpc::ServerUnaryReactor* ListConversations(grpc::CallbackServerContext* context,
                                              const v1::ListConversationsRequest* request,
                                              v1::ListConversationsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateConversation(grpc::CallbackServerContext* context,
                                               const v1::UpdateConversationRequest* request,
                                               v1::UpdateConversationResponse* response) override;
  grpc::ServerUnaryReactor* DeleteConversation(grpc::CallbackServerContext* context,
                                               const v1::DeleteConversationRequest* request,
                                               v1::DeleteConversationResponse* response) override;
  grpc::ServerUnaryReactor* ForkConversation(grpc::CallbackServerContext* context,
                                             const v1::ForkConversationRequest* request,
                                             v1::ForkConversationResponse* response) override;
  grpc::ServerUnaryReactor* AppendMessage(grpc::CallbackServerContext* context,
                                          const v1::AppendMessageRequest* request,
                                          v1::AppendMessageResponse* response) override;
  grpc::ServerUnaryReactor* GetMessage(grpc::CallbackServerContext* context,
                                       const v1::GetMessageRequest* request,
                                       v1::GetMessageResponse* response) override;
  grpc::ServerUnaryReactor* ListMessages(grpc::CallbackServerContext* context,
                                         const v1::ListMessagesRequest* request,
                                         v1::ListMessagesResponse* response) override;
  grpc::ServerBidiReactor<v1::WriteMessageStreamRequest, v1::WriteMessageStreamResponse>*
  WriteMessageStream(grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<v1::WatchMessageResponse>* WatchMessage(
      grpc::CallbackServerContext* context, const v1::WatchMessageRequest* request) override;
  grpc::ServerWriteReactor<v1::WatchConversationResponse>* WatchConversation(
      grpc::CallbackServerContext* context, const v1::WatchConversationRequest* request) override;
  grpc::ServerUnaryReactor* PublishSignal(grpc::CallbackServerContext* context,
                                          const v1::PublishSignalRequest* request,
                                          v1::PublishSignalResponse* response) override;

  // What the stream reactors share with the service.
  struct Deps {
    Store& store;
    PersistenceMetrics& metrics;
    ThreadPool& pool;
    DeltaCommitter& committer;
    WatchHub& hub;
    StreamLeases& leases;
    absl::Duration signal_max_age;
  };

 private:
  // Runs `work` (returning absl::Status) on the pool and finishes the call with its result.
  template <typename Work>
  grpc::ServerUnaryReactor* RunOnPool(grpc::CallbackServerContext* context, const char* operation,
                                      Work work);

  Store& store_;
  std::shared_ptr<prometheus::Registry> registry_;
  PersistenceMetrics metrics_;
  WatchHub hub_;
  DeltaCommitter committer_;
  ThreadPool pool_;
  StreamLeases leases_;
  Deps deps_;
};

}  // namespace parley::persistence
