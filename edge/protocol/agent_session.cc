#include "edge/protocol/agent_session.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/post.hpp"
#include "edge/server/http_session.h"

namespace parley::edge {
namespace {

// The turn's idempotency key: no other message of any connection has it.
std::string NewRequestId() {
  thread_local absl::BitGen bitgen;
  return absl::StrFormat("agent-%016x%016x", absl::Uniform<uint64_t>(bitgen),
                         absl::Uniform<uint64_t>(bitgen));
}

}  // namespace

std::string DatasetContext(std::string_view dataset) {
  return absl::StrCat("The user's questions are about the dataset \"",
                      absl::string_view(dataset.data(), dataset.size()),
                      "\". Put any code in fenced code blocks.");
}

AgentSession::AgentSession(Transport transport) : transport_(transport) {}

AgentSession::AgentSession(Transport transport, AgentStream stream, std::string continued_reply_id)
    : transport_(transport),
      stream_(std::move(stream)),
      continued_reply_id_(std::move(continued_reply_id)) {}

std::unique_ptr<AgentSession> AgentSession::Continuing(EventStreamPosition after,
                                                       std::string conversation_id) {
  std::string reply_id = after.reply_id;
  return std::unique_ptr<AgentSession>(
      new AgentSession(Transport::kEventStream,
                       AgentStream::Continuing(std::move(after.reply_id),
                                               std::move(conversation_id), after.position),
                       std::move(reply_id)));
}

AgentSession::~AgentSession() { OnClosed(); }

void AgentSession::Open(DialectHost& host) {
  host_ = &host;
  ChatOptions options;
  // The agent page stops a reply by closing its socket; an event stream that drops is
  // reconnected by EventSource and continued instead.
  options.cancel_turns_on_close = transport_ == Transport::kWebSocket;
  // The client hard-codes its model name (x-ai/grok-4-fast:free).
  options.unknown_model = UnknownModel::kUseDefault;
  Frames opening;
  if (!continued_reply_id_.empty()) {
    chat_ = &host.OpenChat(*host.request().user, std::move(options));
    for (AgentEvent& event : stream_.Opening()) {
      Add(std::move(event), opening);
    }
    for (std::string& frame : opening) {
      host.Send(std::move(frame));
    }
    // From the reply's first delta: the positions are counted over its whole text.
    chat_->Handle(ResumeStream{continued_reply_id_, 0});
    return;
  }
  const std::string& query = host.request().query;
  SendMessage message;
  message.content = QueryParameter(query, "question");
  if (absl::StripAsciiWhitespace(message.content).empty()) {
    host.Send(Frame(AgentErrorEvent("the \"question\" query parameter is missing or empty")));
    return host.Close(CloseCode::kPolicy);
  }
  chat_ = &host.OpenChat(*host.request().user, std::move(options));
  for (AgentEvent& event : stream_.Opening()) {
    Add(std::move(event), opening);
  }
  for (std::string& frame : opening) {
    host.Send(std::move(frame));
  }
  message.id = NewRequestId();
  message.model = QueryParameter(query, "model");
  const std::string dataset = QueryParameter(query, "dataset");
  if (!dataset.empty()) {
    message.conversation_metadata["dataset"] = dataset;
    message.system_context = DatasetContext(dataset);
  }
  chat_->Handle(std::move(message));
}

void AgentSession::OnFrame(std::string_view /*frame*/, FrameType /*type*/) {
  // The dialect's client says everything in its query string; anything it sends is ignored.
}

void AgentSession::Encode(const Event& event, Frames& frames) {
  AgentOutput out = stream_.Map(event);
  for (AgentEvent& agent_event : out.events) {
    Add(std::move(agent_event), frames);
  }
  if (out.keep_alive && transport_ == Transport::kEventStream) {
    frames.push_back(EncodeSseComment("waiting for the model"));
  }
  if (out.close_code.has_value() && host_ != nullptr) {
    // Encode runs while the transport queues this event: it closes once the frames are queued.
    boost::asio::post(host_->executor(),
                      [host = host_, alive = std::weak_ptr<bool>(alive_), code = *out.close_code] {
                        if (!alive.expired()) {
                          host->Close(code);
                        }
                      });
  }
}

void AgentSession::Add(AgentEvent event, Frames& frames) {
  if (transport_ == Transport::kWebSocket) {
    frames.push_back(std::move(event.json));
    return;
  }
  if (stream_.reply_id().empty() && !stream_.ended()) {
    held_.push_back(std::move(event));
    return;
  }
  for (const AgentEvent& held : std::exchange(held_, {})) {
    frames.push_back(Frame(held));
  }
  frames.push_back(Frame(event));
}

std::string AgentSession::Frame(const AgentEvent& event) const {
  if (transport_ == Transport::kWebSocket) {
    return event.json;
  }
  // A turn that failed before it had a reply has nothing to name.
  const std::string id = stream_.reply_id().empty()
                             ? std::string()
                             : FormatEventId({stream_.reply_id(), event.position});
  return EncodeSseEvent(id, event.json);
}

void AgentSession::OnClosed() {
  alive_.reset();
  host_ = nullptr;
}

}  // namespace parley::edge
