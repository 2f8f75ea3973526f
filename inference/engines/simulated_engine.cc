#include "inference/engines/simulated_engine.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "absl/strings/ascii.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "inference/token_count.h"

namespace parley::inference {
namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

constexpr std::array<std::string_view, 96> kWords = {
    "the",     "a",       "river",    "light",   "quiet",   "morning", "stone",  "garden",
    "we",      "it",      "is",       "was",     "and",     "but",     "of",     "to",
    "in",      "over",    "under",    "beside",  "never",   "always",  "slowly", "bright",
    "cold",    "warm",    "small",    "large",   "old",     "new",     "city",   "road",
    "window",  "letter",  "question", "answer",  "idea",    "reason",  "story",  "voice",
    "moves",   "holds",   "finds",    "keeps",   "turns",   "makes",   "brings", "shows",
    "learns",  "waits",   "follows",  "changes", "builds",  "carries", "opens",  "closes",
    "simple",  "careful", "clear",    "honest",  "distant", "gentle",  "useful", "strange",
    "every",   "some",    "many",     "few",     "one",     "this",    "that",   "their",
    "house",   "field",   "signal",   "pattern", "measure", "number",  "system", "model",
    "time",    "place",   "people",   "water",   "paper",   "music",   "detail", "method",
    "because", "while",   "after",    "before",  "where",   "when",    "then",   "here",
};

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

// Produces words one token at a time, grouped into capitalised sentences.
class WordStream {
 public:
  explicit WordStream(uint64_t seed) : state_(seed) {
    natural_length_ = 16 + static_cast<int>(NextRandom(state_) % 113);
  }

  int natural_length() const { return natural_length_; }

  std::string NextToken() {
    std::string word(kWords[NextRandom(state_) % kWords.size()]);
    if (sentence_left_ == 0) {
      sentence_left_ = 5 + static_cast<int>(NextRandom(state_) % 10);
      word[0] = absl::ascii_toupper(static_cast<unsigned char>(word[0]));
    }
    --sentence_left_;
    ++emitted_;
    if (sentence_left_ == 0 || emitted_ == natural_length_) {
      word += '.';
      sentence_left_ = 0;
    }
    return emitted_ == 1 ? word : " " + word;
  }

 private:
  uint64_t state_;
  int natural_length_ = 0;
  int sentence_left_ = 0;
  int emitted_ = 0;
};

class SimulatedGeneration : public Generation,
                            public std::enable_shared_from_this<SimulatedGeneration> {
 public:
  SimulatedGeneration(asio::io_context& io, const SimulatedEngine::Options& options,
                      const v1::GenerateRequest& request, absl::Time deadline)
      : strand_(asio::make_strand(io)),
        timer_(strand_),
        words_(SeedFor(request)),
        prompt_tokens_(EstimatePromptTokens(request)),
        start_(SteadyClock::now()) {
    int limit = options.max_tokens > 0 ? options.max_tokens : words_.natural_length();
    if (request.sampling().has_max_tokens() && request.sampling().max_tokens() > 0) {
      limit = std::min(limit, request.sampling().max_tokens());
    }
    total_tokens_ = std::min(limit, words_.natural_length());
    finish_reason_ =
        words_.natural_length() > limit ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP;
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
          ++emitted_;
          chunk.mutable_text_delta()->set_text(words_.NextToken());
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
  WordStream words_;
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
  WordStream words(SeedFor(request));
  std::string text;
  for (int i = 0; i < words.natural_length(); ++i) {
    text += words.NextToken();
  }
  return text;
}

}  // namespace parley::inference
