// The official `openai` npm package, unchanged, as a client of the real edge's Chat Completions
// API: what it returns is checked against what persistence stored.
// Environment: PARLEY_BIN_DIR (the directory of the service binaries).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { startStack, stopAll, storedMessages } from "./stack.mjs";

const kConversationHeader = "x-parley-conversation-id";
let base;

function client(user, options = {}) {
  // The key is not a JWT, so the development-mode edge ignores it; userId names the user.
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-not-a-jwt", defaultQuery: { userId: user },
    maxRetries: 0, ...options });
}

const sha256 = (text) => createHash("sha256").update(text, "utf8").digest("hex");

before(async () => {
  base = await startStack();
});
after(stopAll);

test("a completion is stored and its id is the stored reply's id", async () => {
  const { data, response } = await client("ann").chat.completions
    .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello" }] })
    .withResponse();
  assert.equal(data.object, "chat.completion");
  const reply = data.choices[0].message.content;
  assert.ok(reply.length > 0);
  assert.equal(data.choices[0].finish_reason, "stop");
  assert.ok(data.usage.completion_tokens > 0);
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);

  const conversationId = response.headers.get(kConversationHeader);
  assert.ok(conversationId);
  const stored = await storedMessages(base, "ann", conversationId);
  assert.equal(stored.length, 2);
  assert.equal(stored[0].content, "Say hello");
  assert.equal(stored[1].id, data.id);
  assert.equal(stored[1].content, reply);
  assert.equal(stored[1].sha256, sha256(reply));
});

test("a stream assembles to the stored text and ends with one usage chunk", async () => {
  const { data: stream, response } = await client("bob").chat.completions
    .create({ messages: [{ role: "user", content: "Stream a reply" }], stream: true,
      stream_options: { include_usage: true } })
    .withResponse();
  let text = "";
  let id;
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    id = chunk.id;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.ok(usage.usage.completion_tokens > 0);
  assert.equal(chunks.filter((chunk) => chunk.usage).length, 1, "exactly one usage chunk");
  assert.equal(chunks.at(-2).choices[0].finish_reason, "stop");

  const stored = await storedMessages(base, "bob", response.headers.get(kConversationHeader));
  assert.equal(stored[1].id, id);
  assert.equal(stored[1].content, text);
  assert.equal(stored[1].sha256, sha256(text));
});

test("a second request with the conversation header continues the same conversation", async () => {
  const openai = client("cat");
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "First" }];
  const first = await openai.chat.completions.create({ messages }).withResponse();
  const conversationId = first.response.headers.get(kConversationHeader);
  messages.push(first.data.choices[0].message, { role: "user", content: "Second" });
  // OpenAI clients resend the whole history; only the new question is stored.
  const second = await openai.chat.completions
    .create({ messages }, { headers: { "X-Parley-Conversation-Id": conversationId } })
    .withResponse();
  assert.equal(second.response.headers.get(kConversationHeader), conversationId);
  const stored = await storedMessages(base, "cat", conversationId);
  assert.deepEqual(stored.map((message) => message.role), ["system", "user", "assistant", "user", "assistant"]);
  assert.equal(stored[3].content, "Second");
  assert.equal(stored[4].id, second.data.id);
  assert.equal(stored[4].content, second.data.choices[0].message.content);
});

test("a bad request is an APIError in OpenAI's shape", async () => {
  await assert.rejects(
    client("dan").chat.completions.create({ messages: [{ role: "assistant", content: "no question" }] }),
    (error) => {
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.equal(error.status, 400);
      assert.equal(error.type, "invalid_request_error");
      assert.match(error.message, /last message/);
      return true;
    });
});

test("a deadline shorter than the reply raises deadline_exceeded mid-stream", async () => {
  const { data: stream, response } = await client("eve").chat.completions
    .create({ messages: [{ role: "user", content: "Take your time" }], stream: true },
      { headers: { "X-Parley-Deadline-Ms": "1" } })
    .withResponse();
  let text = "";
  await assert.rejects(async () => {
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  }, (error) => {
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal(error.code, "deadline_exceeded");
    return true;
  });
  // Stored as interrupted, with exactly what was streamed.
  const stored = await storedMessages(base, "eve", response.headers.get(kConversationHeader));
  assert.equal(stored[1].status, "interrupted");
  assert.equal(stored[1].content, text);
});

test("models.list() lists the inference service's models", async () => {
  const models = [];
  for await (const model of client("fay").models.list()) models.push(model);
  assert.ok(models.length > 0);
  assert.equal(models[0].object, "model");
  assert.ok(models[0].id);
});

test("over the user's rate a request is a 429 with Retry-After", async () => {
  const limited = await startStack(["--user_messages_per_minute=1", "--user_message_burst=1"]);
  const openai = new OpenAI({ baseURL: `${limited}/v1`, apiKey: "sk-x", defaultQuery: { userId: "gus" },
    maxRetries: 0 });
  await openai.chat.completions.create({ messages: [{ role: "user", content: "one" }] });
  await assert.rejects(openai.chat.completions.create({ messages: [{ role: "user", content: "two" }] }),
    (error) => {
      assert.ok(error instanceof OpenAI.RateLimitError);
      assert.equal(error.status, 429);
      assert.ok(Number(error.headers.get("retry-after")) >= 1);
      assert.equal(error.code, "rate_limit_exceeded");
      return true;
    });
});

test("a client going away mid-stream cancels nothing: the reply is stored complete", async () => {
  const slow = await startStack([], { tokensPerSecond: 15 });
  const openai = new OpenAI({ baseURL: `${slow}/v1`, apiKey: "sk-x", defaultQuery: { userId: "hal" },
    maxRetries: 0 });
  const stream = await openai.chat.completions.create(
    { messages: [{ role: "user", content: "A long answer, please" }], stream: true },
    { headers: { "X-Parley-Conversation-Id": "walk-away" } });
  let id;
  for await (const chunk of stream) {
    id = chunk.id;
    // Leaving the loop closes the response, as a client that goes away does.
    if (chunk.choices[0]?.delta?.content) break;
  }
  // Follow the reply to its end from persistence (the resume stream of the same conversation).
  const followed = await fetch(`${slow}/api/chat/walk-away/stream?userId=hal`);
  assert.equal(followed.status, 200);
  const parts = (await followed.text()).split("\n\n").filter((line) => line.startsWith("data: {"))
    .map((line) => JSON.parse(line.slice(6)));
  assert.equal(parts.at(-1).type, "finish");
  const text = parts.filter((part) => part.type === "text-delta").map((part) => part.delta).join("");

  const response = await fetch(`${slow}/v1/conversations?userId=hal`);
  const { conversations } = await response.json();
  const stored = await storedMessages(slow, "hal", conversations[0].id);
  assert.equal(stored[1].id, id);
  assert.equal(stored[1].status, "complete");
  assert.equal(stored[1].content, text);
});
