#include "edge/turn/suggestions.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "boost/asio/post.hpp"
#include "boost/json/array.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"

namespace parley::edge {
namespace {

constexpr absl::string_view kInstruction =
    "Suggest up to three short follow-up questions the user might ask next about this "
    "conversation. Write each question on its own line, in the user's language, at most twelve "
    "words each, with no numbering, no quotes and nothing else.";

// Cuts `text` to at most `bytes` bytes without splitting a UTF-8 character.
absl::string_view Prefix(absl::string_view text, size_t bytes) {
  if (text.size() <= bytes) {
    return text;
  }
  size_t cut = bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return text.substr(0, cut);
}

// Takes off one list marker: a bullet ("-", "*", "•", ...) or a number ("1.", "2)", "(3)", "4:").
bool StripListMarker(absl::string_view& line) {
  for (absl::string_view bullet : {"- ", "* ", "+ ", "> ", "• ", "· ", "– ", "— ", "•", "·"}) {
    if (absl::ConsumePrefix(&line, bullet)) {
      return true;
    }
  }
  absl::string_view rest = line;
  const bool parenthesised = absl::ConsumePrefix(&rest, "(");
  size_t digits = 0;
  while (digits < rest.size() && digits < 3 && absl::ascii_isdigit(rest[digits])) {
    ++digits;
  }
  if (digits == 0 || digits == rest.size()) {
    return false;
  }
  const char after = rest[digits];
  if (parenthesised ? after != ')' : (after != '.' && after != ')' && after != ':')) {
    return false;
  }
  rest.remove_prefix(digits + 1);
  // "1.5 million?" is a question, not item 1.
  if (!rest.empty() && !absl::ascii_isspace(rest.front())) {
    return false;
  }
  line = rest;
  return true;
}

// Takes off one pair of quotes or emphasis around the whole line.
bool StripWrapping(absl::string_view& line) {
  static constexpr std::pair<absl::string_view, absl::string_view> kPairs[] = {
      {"**", "**"}, {"__", "__"}, {"\"", "\""}, {"'", "'"}, {"`", "`"},
      {"“", "”"},   {"‘", "’"},   {"«", "»"},   {"*", "*"}, {"_", "_"},
  };
  for (const auto& [open, close] : kPairs) {
    if (line.size() >= open.size() + close.size() && absl::StartsWith(line, open) &&
        absl::EndsWith(line, close)) {
      line.remove_prefix(open.size());
      line.remove_suffix(close.size());
      return true;
    }
  }
  return false;
}

std::string Clean(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  while (StripListMarker(line)) {
    line = absl::StripAsciiWhitespace(line);
  }
  // Lines copied out of a list in code keep its commas: "What next?",
  absl::ConsumeSuffix(&line, ",");
  while (StripWrapping(line)) {
    line = absl::StripAsciiWhitespace(line);
  }
  return std::string(line);
}

// An introduction to the list rather than an item of it.
bool IsIntroduction(absl::string_view line) {
  if (absl::EndsWith(line, ":")) {
    return true;
  }
  for (absl::string_view opener :
       {"here are", "here is", "here's", "sure", "certainly", "of course"}) {
    if (absl::StartsWithIgnoreCase(line, opener)) {
      return true;
    }
  }
  return false;
}

bool HasAlphanumeric(absl::string_view line) {
  return std::any_of(line.begin(), line.end(), [](char c) {
    return absl::ascii_isalnum(c) || (static_cast<unsigned char>(c) & 0x80) != 0;
  });
}

// The lines of the answer; several numbered questions run together on one line are split.
std::vector<std::string> Lines(absl::string_view text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, absl::ByAnyChar("\r\n"))) {
    size_t start = 0;
    for (size_t question = line.find("? ", start); question != absl::string_view::npos;
         question = line.find("? ", question + 1)) {
      absl::string_view next = absl::StripLeadingAsciiWhitespace(line.substr(question + 1));
      absl::string_view marker = next;
      if (StripListMarker(marker)) {
        lines.emplace_back(line.substr(start, question + 1 - start));
        start = line.size() - next.size();
      }
    }
    lines.emplace_back(line.substr(start));
  }
  return lines;
}

// The strings of a JSON array answer, or nothing when the answer is not one.
std::vector<std::string> JsonList(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (!absl::StartsWith(text, "[")) {
    return {};
  }
  boost::system::error_code ec;
  boost::json::value value =
      boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
  std::vector<std::string> items;
  if (ec || !value.is_array()) {
    return items;
  }
  for (const boost::json::value& item : value.get_array()) {
    if (item.is_string()) {
      items.emplace_back(item.get_string());
    }
  }
  return items;
}

size_t Words(absl::string_view line) {
  const std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipWhitespace());
  return words.size();
}

}  // namespace

inference_pb::GenerateRequest SuggestionsRequest(absl::string_view model,
                                                 absl::string_view question,
                                                 absl::string_view answer) {
  inference_pb::GenerateRequest request;
  request.set_model(std::string(model));
  inference_pb::ChatMessage* system = request.add_messages();
  system->set_role(inference_pb::ROLE_SYSTEM);
  system->set_content(std::string(kInstruction));
  inference_pb::ChatMessage* user = request.add_messages();
  user->set_role(inference_pb::ROLE_USER);
  user->set_content(std::string(question));
  inference_pb::ChatMessage* assistant = request.add_messages();
  assistant->set_role(inference_pb::ROLE_ASSISTANT);
  assistant->set_content(std::string(Prefix(answer, kSuggestionAnswerBytes)));
  // The instruction is repeated last: models follow the newest message most closely.
  inference_pb::ChatMessage* ask = request.add_messages();
  ask->set_role(inference_pb::ROLE_USER);
  ask->set_content(std::string(kInstruction));
  request.mutable_sampling()->set_max_tokens(kSuggestionMaxTokens);
  return request;
}

std::vector<std::string> ParseSuggestions(absl::string_view text) {
  std::vector<std::string> raw = JsonList(text);
  if (raw.empty()) {
    raw = Lines(text);
  }
  std::vector<std::string> candidates;
  for (const std::string& line : raw) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "```")) {
      continue;
    }
    std::string cleaned = Clean(line);
    if (cleaned.empty() || cleaned.size() > kMaxSuggestionBytes || !HasAlphanumeric(cleaned) ||
        IsIntroduction(cleaned)) {
      continue;
    }
    candidates.push_back(std::move(cleaned));
  }
  const bool any_question =
      std::any_of(candidates.begin(), candidates.end(),
                  [](const std::string& c) { return absl::EndsWith(c, "?"); });
  std::vector<std::string> suggestions;
  for (std::string& candidate : candidates) {
    const bool keep = any_question ? absl::EndsWith(candidate, "?")
                                   : Words(candidate) <= 10 && !absl::EndsWith(candidate, ".") &&
                                         !absl::EndsWith(candidate, "!");
    const bool duplicate =
        std::any_of(suggestions.begin(), suggestions.end(),
                    [&](const std::string& s) { return absl::EqualsIgnoreCase(s, candidate); });
    if (keep && !duplicate) {
      suggestions.push_back(std::move(candidate));
      if (suggestions.size() == kMaxSuggestions) {
        break;
      }
    }
  }
  return suggestions;
}

std::shared_ptr<SuggestionsGeneration> SuggestionsGeneration::Start(
    InferenceClient& inference, boost::asio::any_io_executor executor,
    inference_pb::GenerateRequest request, const common::TraceContext& trace, Done done) {
  auto generation = std::make_shared<SuggestionsGeneration>(executor, std::move(done));
  // Started on the executor, so that every callback (posted there) finds `stream_` set.
  boost::asio::post(executor, [generation, &inference, request = std::move(request),
                               trace]() mutable {
    if (generation->cancelled_) {
      return generation->OnDone(absl::CancelledError("suggestions cancelled"));
    }
    generation->stream_ = inference.Generate(
        std::move(request), kSuggestionDeadline, trace,
        GenerateStream::Callbacks{
            .on_message =
                [generation](inference_pb::GenerateResponse chunk) {
                  boost::asio::post(generation->executor_, [generation, chunk = std::move(chunk)] {
                    generation->OnChunk(chunk);
                  });
                },
            .on_done =
                [generation](absl::Status status) {
                  boost::asio::post(
                      generation->executor_,
                      [generation, status = std::move(status)] { generation->OnDone(status); });
                },
        });
  });
  return generation;
}

SuggestionsGeneration::SuggestionsGeneration(boost::asio::any_io_executor executor, Done done)
    : executor_(std::move(executor)), done_(std::move(done)) {}

void SuggestionsGeneration::Cancel() {
  boost::asio::post(executor_, [self = shared_from_this()] {
    self->cancelled_ = true;
    if (self->stream_ != nullptr) {
      self->stream_->Cancel();
    }
  });
}

void SuggestionsGeneration::OnChunk(const inference_pb::GenerateResponse& chunk) {
  if (chunk.has_text_delta()) {
    text_ += chunk.text_delta().text();
  }
  // A model that ignores the budget is cut off rather than read to the end.
  if (text_.size() > 8 * kMaxSuggestions * kMaxSuggestionBytes) {
    cancelled_ = true;
  }
  if (cancelled_) {
    stream_->Cancel();
  } else {
    stream_->ReadNext();
  }
}

void SuggestionsGeneration::OnDone(const absl::Status& status) {
  stream_.reset();
  Done done = std::move(done_);
  done_ = nullptr;
  if (!done) {
    return;
  }
  if (!status.ok() || cancelled_) {
    return done({}, /*failed=*/true);
  }
  done(ParseSuggestions(text_), /*failed=*/false);
}

InferenceSuggester::InferenceSuggester(InferenceClient& inference, prometheus::Registry& registry)
    : inference_(inference),
      outcomes_(prometheus::BuildCounter()
                    .Name("parley_edge_suggestions_total")
                    .Help("Follow-up suggestions generations, by outcome.")
                    .Register(registry)),
      suggested_(outcomes_.Add({{"outcome", "suggested"}})),
      none_(outcomes_.Add({{"outcome", "none"}})),
      failed_(outcomes_.Add({{"outcome", "failed"}})) {}

std::function<void()> InferenceSuggester::Suggest(
    absl::string_view model, absl::string_view question, absl::string_view answer,
    const std::string& user_id, boost::asio::any_io_executor executor, Done done) {
  inference_pb::GenerateRequest request = SuggestionsRequest(model, question, answer);
  request.set_user_id(user_id);
  std::shared_ptr<SuggestionsGeneration> generation = SuggestionsGeneration::Start(
      inference_, std::move(executor), std::move(request), common::NewTraceContext(),
      [this, done = std::move(done)](std::vector<std::string> suggestions, bool failed) {
        (failed ? failed_ : suggestions.empty() ? none_ : suggested_).Increment();
        done(std::move(suggestions));
      });
  return [generation] { generation->Cancel(); };
}

}  // namespace parley::edge
