#pragma once

// Response bodies in the exact shapes these servers stream from
// POST /v1/chat/completions with "stream": true and
// "stream_options": {"include_usage": true}: field order, nulls, blank lines
// and the final usage chunk as each one sends them.

namespace parley::inference::testing {

// OpenAI: a role-only first chunk, content deltas, an empty delta carrying
// finish_reason, then a usage-only chunk with empty choices.
inline constexpr char kOpenAiStream[] =
    "data: "
    "{\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":"
    "null,\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"content\":\" How can I help?\"},\"logprobs\":null,\"finish_reason\":"
    "null}],\"usage\":null}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-AXq1oZ7\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":8,\"total_tokens\":17,"
    "\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n"
    "data: [DONE]\n\n";

// vLLM with a reasoning parser: reasoning_content deltas before content, the
// finish chunk carries stop_reason, usage comes in its own chunk.
inline constexpr char kVllmReasoningStream[] =
    "data: "
    "{\"id\":\"chatcmpl-6d1c2f0e\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-6d1c2f0e\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"reasoning_content\":\"The user\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-6d1c2f0e\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"reasoning_content\":\" says hi.\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-6d1c2f0e\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-6d1c2f0e\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"content\":\" there.\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}"
    "\n\n"
    "data: "
    "{\"id\":\"chatcmpl-6d1c2f0e\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B\",\"choices\":[],\"usage\":{"
    "\"prompt_tokens\":7,\"total_tokens\":13,\"completion_tokens\":6}}\n\n"
    "data: [DONE]\n\n";

// llama.cpp server: choices first, content null in the role chunk, usage and
// timings on the finish chunk itself, no separate usage chunk.
inline constexpr char kLlamaCppStream[] =
    "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":null}}],\"created\":1732406400,\"id\":\"chatcmpl-kq8ZyHc\",\"model\":"
    "\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4179-2a8a3b1d\",\"object\":"
    "\"chat.completion.chunk\"}\n\n"
    "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"Hello\"}}],"
    "\"created\":1732406400,\"id\":\"chatcmpl-kq8ZyHc\",\"model\":\"gpt-3.5-turbo\","
    "\"system_fingerprint\":\"b4179-2a8a3b1d\",\"object\":\"chat.completion.chunk\"}\n\n"
    "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\" there\"}}],"
    "\"created\":1732406400,\"id\":\"chatcmpl-kq8ZyHc\",\"model\":\"gpt-3.5-turbo\","
    "\"system_fingerprint\":\"b4179-2a8a3b1d\",\"object\":\"chat.completion.chunk\"}\n\n"
    "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"delta\":{}}],\"created\":"
    "1732406400,\"id\":\"chatcmpl-kq8ZyHc\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":"
    "\"b4179-2a8a3b1d\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":2,"
    "\"prompt_tokens\":5,\"total_tokens\":7},\"timings\":{\"prompt_n\":5,\"prompt_ms\":10.517,"
    "\"prompt_per_token_ms\":2.1034,\"prompt_per_second\":475.42,\"predicted_n\":2,"
    "\"predicted_ms\":21.011,\"predicted_per_token_ms\":10.5055,\"predicted_per_second\":95.19}}"
    "\n\n"
    "data: [DONE]\n\n";

// Ollama's OpenAI endpoint: role repeated in every delta, "reasoning" for
// thinking models, fp_ollama fingerprint, usage chunk with empty choices.
inline constexpr char kOllamaStream[] =
    "data: {\"id\":\"chatcmpl-412\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"qwen3:0.6b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"reasoning\":\"Okay.\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-412\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"qwen3:0.6b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"Hey\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-412\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"qwen3:0.6b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"!\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-412\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"qwen3:0.6b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"chatcmpl-412\",\"object\":\"chat.completion.chunk\",\"created\":1732406400,"
    "\"model\":\"qwen3:0.6b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{"
    "\"prompt_tokens\":11,\"completion_tokens\":4,\"total_tokens\":15}}\n\n"
    "data: [DONE]\n\n";

}  // namespace parley::inference::testing
