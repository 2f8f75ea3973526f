#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "boost/asio/any_io_executor.hpp"
#include "common/trace_context.h"
#include "edge/clients/inference_client.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"

// Follow-up suggestions: after a reply, a second, short generation through the inference service
// asks the model for up to three short questions the user might ask next. Dialects that show
// suggestions (copilot) send them after the reply's end, never before, and only when the
// generation worked: a failed or useless answer means no suggestions, not an error.
namespace parley::edge {

inline constexpr int kMaxSuggestions = 3;
// A suggestion is a short line; anything longer is prose, not a follow-up question.
inline constexpr size_t kMaxSuggestionBytes = 160;
// The generation's token budget: three short questions fit well within it.
inline constexpr int kSuggestionMaxTokens = 120;
// How much of the reply the prompt quotes; the start of a long answer says what it was about.
inline constexpr size_t kSuggestionAnswerBytes = 4000;

// The generation that asks `model` for follow-up questions to `question` and its `answer`.
inference_pb::GenerateRequest SuggestionsRequest(absl::string_view model,
                                                 absl::string_view question,
                                                 absl::string_view answer);

// The suggestions in the model's answer to SuggestionsRequest: one per line, with list markers
// ("1.", "2)", "-", "*", "•"), surrounding quotes and emphasis taken off, an introduction ("Here
// are some questions:") and duplicates dropped, at most kMaxSuggestions. When some lines are
// questions only those count; otherwise only short lines that are not sentences of prose.
// A JSON array of strings is read as the list. Empty when nothing in it looks like a suggestion.
std::vector<std::string> ParseSuggestions(absl::string_view text);

// How long a suggestions generation may take; a slower one counts as failed.
inline constexpr absl::Duration kSuggestionDeadline = absl::Seconds(10);

// One suggestions generation: SuggestionsRequest through the inference service, its text read
// to the end and parsed. `done` runs once, on `executor`, with the suggestions, or with none when
// the generation failed, was cancelled or gave nothing usable. It keeps itself alive until then.
class SuggestionsGeneration : public std::enable_shared_from_this<SuggestionsGeneration> {
 public:
  // `failed` tells a generation that failed or was stopped from one that wrote nothing usable.
  using Done = std::function<void(std::vector<std::string>, bool failed)>;

  static std::shared_ptr<SuggestionsGeneration> Start(InferenceClient& inference,
                                                      boost::asio::any_io_executor executor,
                                                      inference_pb::GenerateRequest request,
                                                      const common::TraceContext& trace, Done done);

  SuggestionsGeneration(boost::asio::any_io_executor executor, Done done);

  // Stops the generation; `done` gets no suggestions. Any thread.
  void Cancel();

 private:
  void OnChunk(const inference_pb::GenerateResponse& chunk);
  void OnDone(const absl::Status& status);

  boost::asio::any_io_executor executor_;
  Done done_;
  std::shared_ptr<GenerateStream> stream_;
  std::string text_;
  bool cancelled_ = false;
};

// Where a dialect session gets follow-up suggestions from; an interface, so sessions are
// unit-tested without an inference service.
class Suggester {
 public:
  using Done = std::function<void(std::vector<std::string>)>;

  virtual ~Suggester() = default;

  // Starts a generation of suggestions for `question` and its `answer` by `model`. `done` runs
  // once, on `executor`, with the suggestions (none on failure). The returned function stops the
  // generation (then `done` gets none); any thread.
  virtual std::function<void()> Suggest(absl::string_view model, absl::string_view question,
                                        absl::string_view answer, const std::string& user_id,
                                        boost::asio::any_io_executor executor, Done done) = 0;
};

// Suggestions from the inference service, with the model that wrote the reply. Each generation
// is counted in parley_edge_suggestions_total by outcome: `suggested` (some came back), `none`
// (the model wrote nothing usable), `failed` (the generation failed or was stopped).
class InferenceSuggester final : public Suggester {
 public:
  // `inference` outlives this; the counter family is registered in `registry`.
  InferenceSuggester(InferenceClient& inference, prometheus::Registry& registry);

  std::function<void()> Suggest(absl::string_view model, absl::string_view question,
                                absl::string_view answer, const std::string& user_id,
                                boost::asio::any_io_executor executor, Done done) override;

 private:
  InferenceClient& inference_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  prometheus::Counter& suggested_;
  prometheus::Counter& none_;
  prometheus::Counter& failed_;
};

}  // namespace parley::edge
