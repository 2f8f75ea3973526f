#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "common/trace_context.h"
#include "edge/clients/inference_client.h"
#include "edge/clients/persistence_client.h"
#include "edge/limits/user_limits.h"
#include "edge/metrics.h"
#include "edge/protocol/messages.h"
#include "edge/turn/conversation_rooms.h"
#include "edge/turn/event_sink.h"
#include "edge/turn/turn_tracker.h"

namespace parley::edge {

// The title a new conversation gets: the start of its first message, cut on a word (or at least
// a UTF-8 character) boundary so a list of conversations reads well.
std::string ConversationTitle(absl::string_view first_message);

// How many of a conversation's newest messages are searched for the reply to a repeated message.
inline constexpr int kRepliesSearched = 200;

// What every turn needs; owned by the server, outliving every turn.
// The branch a connection's last turn left, as persistence stores it: the conversation, and the
// newest messages (at most TurnDeps::history_messages) of the path from its root to that turn's
// reply. The connection's next turn there asks persistence for its new message alone
// (TurnStart.known_branch_leaf_id) instead of reading the branch again; persistence answers with
// the whole page when the branch moved on meanwhile. Used on the connection's strand only.
struct HeldBranch {
  std::string conversation_id;  // As the client names it: a Parley id, or its own name.
  std::vector<persistence_pb::Message> messages;  // Oldest first; empty: none held.
};

struct TurnDeps {
  PersistenceClient* persistence = nullptr;
  InferenceClient* inference = nullptr;
  // The metrics of the dialect of the connection that starts the turn.
  DialectMetrics* metrics = nullptr;
  TurnTracker* tracker = nullptr;
  // The user's other connections viewing the conversation see the turn too; may be null.
  ConversationRooms* rooms = nullptr;
  // Most recent stored messages sent to inference as context.
  int history_messages = 20;
  // The connection's; may be null.
  std::shared_ptr<HeldBranch> held_branch;
  absl::Duration generate_deadline = absl::Minutes(5);
  // Caps a client's deadline (SendMessage::deadline_ms).
  absl::Duration max_client_deadline = absl::Minutes(5);
  // `heartbeat` events while a reply waits for its first token; zero disables.
  absl::Duration heartbeat_interval = absl::Seconds(15);
};

// One chat turn: store the user message, load recent history, open the
// assistant message, stream the model's reply to the client and into
// persistence, and close both ends. All state lives on `executor` (the
// connection's strand); gRPC callbacks are posted there. The turn keeps itself
// alive until both gRPC streams are done, so a dropped connection does not
// stop it: the reply is still stored.
class Turn : public std::enable_shared_from_this<Turn> {
 public:
  using Clock = std::chrono::steady_clock;

  // `slot` counts the turn against its user's concurrent-turn limit until it ends.
  static std::shared_ptr<Turn> Start(const TurnDeps& deps, boost::asio::any_io_executor executor,
                                     std::weak_ptr<EventSink> sink, std::string user_id,
                                     SendMessage message, Clock::time_point received,
                                     TurnSlot slot = {},
                                     common::TraceContext trace = common::NewTraceContext(),
                                     uint64_t connection = 0);

  Turn(const TurnDeps& deps, boost::asio::any_io_executor executor, std::weak_ptr<EventSink> sink,
       std::string user_id, SendMessage message, Clock::time_point received,
       common::TraceContext trace);

  // Stops the turn; what was streamed so far is stored as cancelled. Any thread.
  // `notify` sends stream_cancelled once the stored message is closed.
  void Cancel(bool notify = false);

  // The reply's message id, empty until it is stored. On the executor only.
  const std::string& assistant_message_id() const { return assistant_message_id_; }
  bool ended() const { return ended_; }

 private:
  // Each step runs on the executor.
  // Loads the stored message a regenerate or an edit names, then continues with `then`; a
  // failure ends the turn with an error that names `action`.
  void LoadNamedMessage(const std::string& message_id, absl::string_view action,
                        void (Turn::*then)(const persistence_pb::Message&));
  void AnswerAgain(const persistence_pb::Message& stored);  // Regenerate.
  void StoreEdit(const persistence_pb::Message& edited);    // Edit: a sibling of `edited`.
  void StoreUserMessage(const std::string& conversation_id, const std::string& parent_id,
                        bool no_parent);
  // A new conversation's metadata (SendMessage::conversation_metadata), before the ack.
  // Stores the user message with AppendMessage (the start of a turn persistence cannot start).
  void AppendUserMessage(persistence_pb::AppendMessageRequest request);
  void OnUserMessageAnswer(absl::StatusOr<persistence_pb::AppendMessageResponse> response);
  void StoreConversationMetadata(const persistence_pb::Message& stored);
  void OnUserMessageStored(const persistence_pb::Message& stored);
  // Acks the stored user message and shows it to the conversation's other viewers.
  void Acknowledge(const persistence_pb::Message& stored);
  // The reply this turn streams (or follows) is `reply`: stream_start names it.
  void AnnounceReply(const persistence_pb::Message& reply);
  // Persistence stored the message, listed its branch and opened its reply in one call.
  void OnTurnStarted(persistence_pb::AppendMessageResponse stored);
  void FindExistingReply();
  // Streams a reply an earlier attempt of this request started, from persistence.
  void FollowExistingReply();
  void LoadHistory();
  void ResolveModel();
  void OpenAssistantMessage();
  void StartStreams();
  void ScheduleHeartbeat();
  void OnChunk(inference_pb::GenerateResponse chunk, Clock::time_point arrival);
  void OnUsage(const inference_pb::Usage& usage);
  void OnFinish(const inference_pb::Finish& finish);
  // Asks inference for the next chunk once the client's socket and persistence have room.
  void PullNext();
  void OnGenerateDone(absl::Status status);
  void OnWriterDone(MessageWriter::Result result);
  void MaybeFinish();
  // Leaves the branch this turn completed to the connection's next turn.
  void HoldBranch();
  // The reply ended because the client's deadline passed.
  bool PastClientDeadline() const;
  void Fail(ErrorCode code, absl::string_view message);
  // `outcome` labels parley_edge_turns_total; empty counts nothing (a repeated message).
  void End(absl::string_view outcome);

  void Emit(Event event, std::optional<Clock::time_point> arrival = std::nullopt);
  // Hands a stream event to the conversation's other viewers.
  void ShowViewers(const Event& event);
  // Wraps a callback so that it runs on the executor with this turn alive.
  template <class F>
  auto OnExecutor(F f);

  const TurnDeps deps_;
  boost::asio::any_io_executor executor_;
  std::weak_ptr<EventSink> sink_;
  const std::string user_id_;
  const SendMessage message_;
  const Clock::time_point received_;
  // Ties the three services' log lines about this turn together.
  const common::TraceContext trace_;
  // The connection that started the turn (its ConversationRooms key): viewers are the others.
  uint64_t connection_ = 0;
  // The conversation's room here while it has viewers, so each token takes only that room's
  // lock; null while nobody here views it, looked up again only once rooms change.
  std::shared_ptr<ConversationRoom> room_;
  uint64_t room_generation_ = ~uint64_t{0};
  uint64_t tracker_key_ = 0;
  TurnSlot slot_;

  std::string conversation_id_;
  std::string user_message_id_;
  std::string assistant_message_id_;
  std::string model_;
  std::vector<persistence_pb::Message> history_;
  // The held branch this turn took (until persistence answers), then the history it sent to
  // inference, which its reply, once complete, continues as the connection's held branch.
  std::vector<persistence_pb::Message> branch_;

  std::unique_ptr<boost::asio::steady_timer> heartbeat_;
  std::shared_ptr<GenerateStream> generate_;
  std::shared_ptr<MessageWriter> writer_;
  bool generate_done_ = false;
  // The engine's finish arrived: the reply is whole, whatever ends the call after it.
  bool engine_finished_ = false;
  bool writer_done_ = false;
  bool cancelled_ = false;
  bool notify_cancel_ = false;
  bool ended_ = false;
  absl::Status inference_status_;
  MessageWriter::Result writer_result_;

  int64_t seq_ = 0;
  // Everything streamed so far, for stream_interrupted's partialResponse.
  std::string text_;
  std::string finish_reason_;
  int32_t prompt_tokens_ = 0;
  int32_t completion_tokens_ = 0;
  std::optional<Clock::time_point> last_chunk_;
};

}  // namespace parley::edge
