// Speed of the inference engines' hot paths, on one core:
//   - SSE parsing alone (MB/s, events/s), in 16 KiB reads like the engine's;
//   - SSE parsing plus the OpenAI chunk mapping (JSON) per event;
//   - whole-engine cost per chunk: a fake upstream on loopback streams a long
//     reply and the test pulls it through OpenAiEngine the way the gRPC
//     reactor does (one Next() at a time), and the same for the simulated engine.
// Run: <build>/bin/parley_inference_bench  (see docs/benchmarks.md).

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "benchmark/benchmark.h"
#include "inference/engines/openai_engine.h"
#include "inference/engines/openai_protocol.h"
#include "inference/engines/simulated_engine.h"
#include "inference/engines/sse_parser.h"
#include "inference/io_threads.h"
#include "tests/inference/fake_openai_server.h"

namespace parley::inference {
namespace {

// A chunk shaped like OpenAI's (about 240 bytes per event), one word each.
std::string OpenAiLikeEvent(int i) {
  return absl::StrCat(
      "data: {\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":"
      "1732406400,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\","
      "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word",
      i % 1000, "\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
}

std::string OpenAiLikeStream(int events) {
  std::string body;
  for (int i = 0; i < events; ++i) {
    body += OpenAiLikeEvent(i);
  }
  body += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
  body += "data: [DONE]\n\n";
  return body;
}

constexpr size_t kReadSize = 16 * 1024;

void BM_SseParse(benchmark::State& state) {
  const std::string stream = OpenAiLikeStream(10000);
  std::vector<SseEvent> events;
  int64_t total_events = 0;
  for (auto _ : state) {
    SseParser parser;
    for (size_t i = 0; i < stream.size(); i += kReadSize) {
      events.clear();
      (void)parser.Feed(std::string_view(stream).substr(i, kReadSize), events);
      total_events += static_cast<int64_t>(events.size());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(stream.size()) * state.iterations());
  state.SetItemsProcessed(total_events);
}
BENCHMARK(BM_SseParse)->Unit(benchmark::kMillisecond);

void BM_SseParseAndMapChunks(benchmark::State& state) {
  const std::string stream = OpenAiLikeStream(10000);
  std::vector<SseEvent> events;
  int64_t total_events = 0;
  for (auto _ : state) {
    SseParser parser;
    for (size_t i = 0; i < stream.size(); i += kReadSize) {
      events.clear();
      (void)parser.Feed(std::string_view(stream).substr(i, kReadSize), events);
      for (const SseEvent& event : events) {
        StreamEvent parsed;
        (void)ParseStreamEvent(event.data, parsed);
        benchmark::DoNotOptimize(parsed);
      }
      total_events += static_cast<int64_t>(events.size());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(stream.size()) * state.iterations());
  state.SetItemsProcessed(total_events);
}
BENCHMARK(BM_SseParseAndMapChunks)->Unit(benchmark::kMillisecond);

// Pulls a generation to its end, one Next() at a time; returns chunks seen.
int64_t Drain(Generation& generation) {
  int64_t chunks = 0;
  for (;;) {
    absl::Notification done;
    bool more = false;
    generation.Next([&](Step step) {
      more = step.chunk.has_value();
      done.Notify();
    });
    done.WaitForNotification();
    if (!more) {
      return chunks;
    }
    ++chunks;
  }
}

v1::GenerateRequest Prompt() {
  v1::GenerateRequest request;
  v1::ChatMessage* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("Tell me a long story.");
  return request;
}

void BM_OpenAiEnginePerChunk(benchmark::State& state) {
  const int deltas = static_cast<int>(state.range(0));
  const std::string body = OpenAiLikeStream(deltas);
  testing::FakeOpenAiServer upstream;
  IoThreads io(1);
  prometheus::Registry registry;
  InferenceMetrics metrics(registry);
  auto transport = UpstreamTransport::Create(io.context(), {}).value();
  OpenAiEngine engine({.public_name = "bench",
                       .url = ParseUpstreamUrl(upstream.url()).value(),
                       .upstream_model = "m",
                       .api_key = "",
                       .defaults = {}},
                      OpenAiEngine::Options(), transport, &metrics);
  int64_t chunks = 0;
  for (auto _ : state) {
    state.PauseTiming();
    upstream.Enqueue(testing::SseReply(testing::SplitEvery(body, kReadSize)));
    state.ResumeTiming();
    std::shared_ptr<Generation> generation = engine.Start(Prompt(), absl::InfiniteFuture());
    chunks += Drain(*generation);
  }
  state.SetItemsProcessed(chunks);
  state.counters["time_per_chunk"] = benchmark::Counter(
      static_cast<double>(chunks), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_OpenAiEnginePerChunk)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

void BM_SimulatedEnginePerChunk(benchmark::State& state) {
  IoThreads io(1);
  SimulatedEngine::Options options;
  options.time_to_first_token = absl::ZeroDuration();
  options.tokens_per_second = 0;
  options.max_tokens = 100000;
  SimulatedEngine engine(io.context(), options);
  int64_t chunks = 0;
  for (auto _ : state) {
    std::shared_ptr<Generation> generation = engine.Start(Prompt(), absl::InfiniteFuture());
    chunks += Drain(*generation);
  }
  state.SetItemsProcessed(chunks);
  state.counters["time_per_chunk"] = benchmark::Counter(
      static_cast<double>(chunks), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SimulatedEnginePerChunk)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

}  // namespace
}  // namespace parley::inference

BENCHMARK_MAIN();
