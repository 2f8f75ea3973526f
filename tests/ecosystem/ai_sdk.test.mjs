// The `ai` npm package's own client side (DefaultChatTransport, readUIMessageStream), unchanged
// and without a browser, against the real edge's UI message stream at /api/chat: what it
// assembles is checked against what persistence stored.
// Environment: PARLEY_BIN_DIR (the directory of the service binaries).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { startReplicas, startStack, stopAll, storedMessages } from "./stack.mjs";

let base;
let slow;
let replicas;  // two edges on the same backends

before(async () => {
  [base, slow, replicas] = await Promise.all([startStack(), startStack([], { tokensPerSecond: 15 }),
    startReplicas(2, [], { tokensPerSecond: 15 })]);
});
after(stopAll);

// A transport for `user` (development mode names users by the userId parameter); its resume GET
// goes to `resumeEdge`, the same edge unless a reload lands on another replica.
function transport(edge, user, resumeEdge = edge) {
  return new DefaultChatTransport({
    api: `${edge}/api/chat?userId=${user}`,
    prepareReconnectToStreamRequest: ({ id }) => ({ api: `${resumeEdge}/api/chat/${id}/stream?userId=${user}` }),
  });
}

const userMessage = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });
const textOf = (message) => message.parts.filter((part) => part.type === "text").map((part) => part.text).join("");

async function lastMessage(stream) {
  let last;
  for await (const message of readUIMessageStream({ stream })) last = message;
  return last;
}

// The one conversation of `user`, as stored.
async function onlyConversation(edge, user) {
  const response = await fetch(`${edge}/v1/conversations?userId=${user}`);
  const { conversations } = await response.json();
  assert.equal(conversations.length, 1);
  return storedMessages(edge, user, conversations[0].id);
}

test("a reply streams and assembles to the stored text; the chat id continues its conversation", async () => {
  const chat = transport(base, "ada");
  const first = [userMessage("u1", "Hello there")];
  const reply = await lastMessage(await chat.sendMessages({
    chatId: "chat-ada", messages: first, trigger: "submit-message", messageId: undefined,
    abortSignal: undefined,
  }));
  assert.equal(reply.role, "assistant");
  assert.ok(textOf(reply).length > 0);
  let stored = await onlyConversation(base, "ada");
  assert.equal(stored.length, 2);
  assert.equal(stored[1].id, reply.id);
  assert.equal(stored[1].content, textOf(reply));

  // useChat sends every message again; only the new one is stored, in the same conversation.
  const second = [...first, reply, userMessage("u2", "And again")];
  const again = await lastMessage(await chat.sendMessages({
    chatId: "chat-ada", messages: second, trigger: "submit-message", messageId: undefined,
    abortSignal: undefined,
  }));
  stored = await onlyConversation(base, "ada");
  assert.deepEqual(stored.map((message) => message.role), ["user", "assistant", "user", "assistant"]);
  assert.equal(stored[2].content, "And again");
  assert.equal(stored[3].id, again.id);
  assert.equal(stored[3].content, textOf(again));
});

// Sends a message, reads until the first words arrive, then goes away as a page reload does; the
// reload's resume GET then follows the reply to its end.
async function reloadMidReply(chat, chatId) {
  const aborted = new AbortController();
  const stream = await chat.sendMessages({
    chatId, messages: [userMessage("u1", "Tell me a story")], trigger: "submit-message",
    messageId: undefined, abortSignal: aborted.signal,
  });
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the reply ended before the reload");
    if (value.type === "text-delta") break;
  }
  aborted.abort();
  await reader.cancel().catch(() => {});
  const resumed = await chat.reconnectToStream({ chatId });
  assert.ok(resumed, "a reply is being generated, so the resume stream is there");
  return lastMessage(resumed);
}

// The user's one conversation holds the question and `reply`, complete, with exactly its text.
async function assertStoredWhole(edge, user, reply) {
  const stored = await onlyConversation(edge, user);
  assert.equal(stored.length, 2);
  assert.equal(stored[1].status, "complete");
  assert.equal(stored[1].id, reply.id);
  assert.equal(textOf(reply), stored[1].content, "the whole reply, exactly once");
}

test("a reload that lands on another edge replica resumes the reply there from persistence", async () => {
  const [first, second] = replicas;
  const chat = transport(first, "cyd", second);
  const reply = await reloadMidReply(chat, "chat-cyd");
  await assertStoredWhole(second, "cyd", reply);
});

test("a reload mid-reply resumes it from persistence and ends with the whole reply once", async () => {
  const chat = transport(slow, "bea");
  const reply = await reloadMidReply(chat, "chat-bea");
  await assertStoredWhole(slow, "bea", reply);

  // Nothing is being generated any more: 204, which the transport reads as no stream.
  assert.equal(await chat.reconnectToStream({ chatId: "chat-bea" }), null);
});

test("a deadline shorter than the reply ends the stream with a deadline_exceeded error part", async () => {
  const chat = new DefaultChatTransport({
    api: `${slow}/api/chat?userId=cid`,
    headers: { "X-Parley-Deadline-Ms": "400" },
  });
  const stream = await chat.sendMessages({
    chatId: "chat-cid", messages: [userMessage("u1", "Take your time")], trigger: "submit-message",
    messageId: undefined, abortSignal: undefined,
  });
  let text = "";
  let error;
  for await (const part of stream) {
    if (part.type === "text-delta") text += part.delta;
    if (part.type === "error") error = part.errorText;
  }
  assert.match(error ?? "", /^deadline_exceeded/);
  // Stored as interrupted, with exactly what was streamed.
  const stored = await onlyConversation(slow, "cid");
  assert.equal(stored[1].status, "interrupted");
  assert.equal(stored[1].content, text);
});
