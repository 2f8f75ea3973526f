#include "inference/engines/simulated_engine.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "inference/token_count.h"

namespace parley::inference {
namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// FNV-1a: stable across platforms and releases, unlike std::hash.
uint64_t Fnv1a(std::string_view text, uint64_t hash = 1469598103934665603ULL) {
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

// splitmix64: tiny, fast and good enough to make text look varied.
uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SeedFor(const v1::GenerateRequest& request) {
  std::string_view last_user;
  for (const v1::ChatMessage& message : request.messages()) {
    if (message.role() == v1::ROLE_USER) {
      last_user = message.content();
    }
  }
  uint64_t seed = Fnv1a(last_user);
  if (request.sampling().has_seed()) {
    uint64_t mix = static_cast<uint64_t>(request.sampling().seed());
    seed ^= NextRandom(mix);
  }
  return seed;
}

// Sentences of the reply's body; "{}" is replaced by a word of the question.
constexpr std::array<std::string_view, 12> kBodySentences = {
    "Questions about {} rarely have a single answer.",
    "A real model would now explain {} step by step.",
    "It helps to start with what you already know about {}.",
    "Most explanations of {} begin with a simple example.",
    "The details of {} depend on what you want to achieve.",
    "Many people find {} easier to grasp with an example.",
    "A good next step is to compare {} with something familiar.",
    "There is more to say about {}, but this model only pretends to know it.",
    "If this matters to you, a real model can say much more about {}.",
    "Think of this reply as a placeholder for a real answer about {}.",
    "This reply streams exactly as a real answer about {} would.",
    "Each word of this reply about {} arrives as a token of its own, paced like a real model.",
};

// Words too common to say what a question is about.
constexpr std::array<std::string_view, 48> kCommonWords = {
    "about", "again", "also",   "because", "been",   "could", "does",  "explain", "from",  "give",
    "have",  "hello", "into",   "just",    "know",   "like",  "make",  "many",    "might", "more",
    "much",  "only",  "please", "really",  "should", "some",  "tell",  "than",    "that",  "their",
    "them",  "then",  "there",  "these",   "they",   "this",  "those", "very",    "want",  "were",
    "what",  "when",  "where",  "which",   "will",   "with",  "would", "your",
};

std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      if (!word.empty()) {
        words.push_back(std::move(word));
        word.clear();
      }
    } else {
      word += c;
    }
  }
  if (!word.empty()) {
    words.push_back(std::move(word));
  }
  return words;
}

// Up to three distinct words of the question that say what it is about, in order.
std::vector<std::string> Topics(const std::vector<std::string>& question) {
  std::vector<std::string> topics;
  for (const std::string& raw : question) {
    std::string word;
    for (char c : raw) {
      if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || (c & 0x80) != 0) {
        word += absl::ascii_tolower(static_cast<unsigned char>(c));
      }
    }
    if (word.size() < 4 ||
        std::find(kCommonWords.begin(), kCommonWords.end(), word) != kCommonWords.end() ||
        std::find(topics.begin(), topics.end(), word) != topics.end()) {
      continue;
    }
    topics.push_back(std::move(word));
    if (topics.size() == 3) {
      break;
    }
  }
  return topics;
}

void AppendWords(std::string_view sentence, std::vector<std::string>& words) {
  for (std::string& word : SplitWords(sentence)) {
    words.push_back(std::move(word));
  }
}

// The whole reply, built up front and handed out one word (one token) at a time. A first-time
// visitor must see at once that the model is simulated, and that it heard the question: it says
// so, quotes the question and writes readable sentences about the question's words.
class ReplyText {
 public:
  ReplyText(const v1::GenerateRequest& request, uint64_t seed) {
    std::string_view last_user;
    for (const v1::ChatMessage& message : request.messages()) {
      if (message.role() == v1::ROLE_USER) {
        last_user = message.content();
      }
    }
    const std::vector<std::string> question = SplitWords(last_user);
    AppendWords(
        "I am the simulated model of Parley: I do not understand your message, I only "
        "write sentences about its words.",
        words_);
    if (!question.empty()) {
      constexpr size_t kQuoted = 12;
      std::string quote = "You asked: \"";
      for (size_t i = 0; i < question.size() && i < kQuoted; ++i) {
        absl::StrAppend(&quote, i == 0 ? "" : " ", question[i]);
      }
      absl::StrAppend(&quote, question.size() > kQuoted ? "...\"" : "\"");
      AppendWords(quote, words_);
    }
    std::vector<std::string> topics = Topics(question);
    if (topics.empty()) {
      topics.push_back("this topic");
    }
    // 60 to 119 words before the closing sentence, whatever the question.
    const size_t target = 60 + NextRandom(seed) % 60;
    size_t sentence = NextRandom(seed) % kBodySentences.size();
    for (size_t i = 0; words_.size() < target; ++i) {
      sentence =
          (sentence + 1 + NextRandom(seed) % (kBodySentences.size() - 1)) % kBodySentences.size();
      const std::string_view body = kBodySentences[sentence];
      const size_t slot = body.find("{}");
      AppendWords(std::string(body.substr(0, slot)) + topics[i % topics.size()] +
                      std::string(body.substr(slot + 2)),
                  words_);
    }
    AppendWords("For real answers, run parley-inference with --engine=openai and a model server.",
                words_);
  }

  int natural_length() const { return static_cast<int>(words_.size()); }

  // Token `i` (from 0): the word, after a space unless it is the first.
  std::string Token(int i) const { return i == 0 ? words_[0] : " " + words_[i]; }

 private:
  std::vector<std::string> words_;
};

class SimulatedGeneration : public Generation,
                            public std::enable_shared_from_this<SimulatedGeneration> {
 public:
  SimulatedGeneration(asio::io_context& io, const SimulatedEngine::Options& options,
                      const v1::GenerateRequest& request, absl::Time deadline)
      : strand_(asio::make_strand(io)),
        timer_(strand_),
        reply_(request, SeedFor(request)),
        prompt_tokens_(EstimatePromptTokens(request)),
        start_(SteadyClock::now()) {
    int limit = options.max_tokens > 0 ? options.max_tokens : reply_.natural_length();
    if (request.sampling().has_max_tokens() && request.sampling().max_tokens() > 0) {
      limit = std::min(limit, request.sampling().max_tokens());
    }
    total_tokens_ = std::min(limit, reply_.natural_length());
    finish_reason_ =
        reply_.natural_length() > limit ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP;
    first_token_at_ = start_ + absl::ToChronoNanoseconds(options.time_to_first_token);
    if (options.tokens_per_second > 0) {
      token_period_ = std::chrono::duration_cast<SteadyClock::duration>(
          std::chrono::duration<double>(1.0 / options.tokens_per_second));
    }
    if (deadline != absl::InfiniteFuture()) {
      deadline_ = start_ + absl::ToChronoNanoseconds(deadline - absl::Now());
    }
  }

  void Next(StepCallback callback) override {
    asio::post(strand_, [self = shared_from_this(), callback = std::move(callback)]() mutable {
      self->DoNext(std::move(callback));
    });
  }

  void Cancel() override {
    asio::post(strand_, [self = shared_from_this()] { self->DoCancel(); });
  }

 private:
  enum class Phase { kTokens, kUsage, kFinish, kEnd, kDone };

  void DoNext(StepCallback callback) {
    if (phase_ == Phase::kDone) {
      callback(Step::End(absl::FailedPreconditionError("generation already ended")));
      return;
    }
    if (cancelled_) {
      phase_ = Phase::kDone;
      callback(Step::End(absl::CancelledError("generation cancelled")));
      return;
    }
    pending_ = std::move(callback);
    SteadyClock::time_point due = SteadyClock::now();
    if (phase_ == Phase::kTokens && emitted_ < total_tokens_) {
      due = first_token_at_ + token_period_ * emitted_;
    }
    if (deadline_ && due > *deadline_) {
      timer_.expires_at(*deadline_);
      timer_.async_wait([self = shared_from_this()](boost::system::error_code error) {
        if (!error && self->pending_) {
          self->phase_ = Phase::kDone;
          self->Deliver(Step::End(absl::DeadlineExceededError("deadline passed while generating")));
        }
      });
      return;
    }
    if (due <= SteadyClock::now()) {
      Produce();
      return;
    }
    timer_.expires_at(due);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code error) {
      if (!error && self->pending_) {
        self->Produce();
      }
    });
  }

  void DoCancel() {
    cancelled_ = true;
    timer_.cancel();
    if (pending_ && phase_ != Phase::kDone) {
      phase_ = Phase::kDone;
      Deliver(Step::End(absl::CancelledError("generation cancelled")));
    }
  }

  void Produce() {
    v1::GenerateResponse chunk;
    switch (phase_) {
      case Phase::kTokens:
        if (emitted_ < total_tokens_) {
          chunk.mutable_text_delta()->set_text(reply_.Token(emitted_));
          ++emitted_;
          Deliver(Step::Chunk(std::move(chunk)));
          return;
        }
        [[fallthrough]];
      case Phase::kUsage: {
        phase_ = Phase::kFinish;
        v1::Usage* usage = chunk.mutable_usage();
        usage->set_prompt_tokens(prompt_tokens_);
        usage->set_completion_tokens(emitted_);
        Deliver(Step::Chunk(std::move(chunk)));
        return;
      }
      case Phase::kFinish:
        phase_ = Phase::kEnd;
        chunk.mutable_finish()->set_reason(finish_reason_);
        Deliver(Step::Chunk(std::move(chunk)));
        return;
      case Phase::kEnd:
        phase_ = Phase::kDone;
        Deliver(Step::End(absl::OkStatus()));
        return;
      case Phase::kDone:
        return;
    }
  }

  void Deliver(Step step) {
    StepCallback callback = std::move(pending_);
    pending_ = nullptr;
    callback(std::move(step));
  }

  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer timer_;
  const ReplyText reply_;
  const int prompt_tokens_;
  const SteadyClock::time_point start_;
  SteadyClock::time_point first_token_at_;
  SteadyClock::duration token_period_{0};
  std::optional<SteadyClock::time_point> deadline_;
  int total_tokens_ = 0;
  v1::FinishReason finish_reason_ = v1::FINISH_REASON_STOP;

  // Touched only on the strand.
  Phase phase_ = Phase::kTokens;
  int emitted_ = 0;
  bool cancelled_ = false;
  StepCallback pending_;
};

}  // namespace

SimulatedEngine::SimulatedEngine(asio::io_context& io, Options options)
    : io_(io), options_(options) {}

std::shared_ptr<Generation> SimulatedEngine::Start(const v1::GenerateRequest& request,
                                                   absl::Time deadline) {
  return std::make_shared<SimulatedGeneration>(io_, options_, request, deadline);
}

std::string SimulatedEngine::NaturalReply(const v1::GenerateRequest& request) {
  const ReplyText reply(request, SeedFor(request));
  std::string text;
  for (int i = 0; i < reply.natural_length(); ++i) {
    text += reply.Token(i);
  }
  return text;
}

}  // namespace parley::inference
