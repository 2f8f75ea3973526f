// @parley/client against a scripted server (a fake WebSocket and an injected clock), for what
// the real edge cannot be made to do on demand: a checksum that does not match, a connection
// that goes silent without closing, a cancelled reply whose last frames overran its end, and a
// rate-limited message.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ParleyClient, sha256Hex } from "../dist/index.js";

/** Timers that run only when the test moves time on. */
class FakeClock {
  constructor() {
    this.time = 0;
    this.timers = new Map();
    this.nextHandle = 1;
  }
  now() { return this.time; }
  setTimeout(callback, ms) {
    const handle = this.nextHandle++;
    this.timers.set(handle, { at: this.time + ms, callback });
    return handle;
  }
  clearTimeout(handle) { this.timers.delete(handle); }
  advance(ms) {
    const until = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = until;
  }
}

/** A WebSocket whose server side is the test: `open()`, `push(frame)`, `sent`. */
function fakeServer() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      sockets.push(this);
    }
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code: 1006 });
    }
  }
  return { FakeSocket, sockets };
}

/** A client with one open fake connection. */
async function connected(options = {}) {
  const clock = new FakeClock();
  const { FakeSocket, sockets } = fakeServer();
  const client = new ParleyClient({ url: "ws://edge/ws/chat", WebSocket: FakeSocket, clock, random: () => 0.5, ...options });
  await new Promise((resolve) => setImmediate(resolve));  // the token step is a resolved promise
  sockets[0].open();
  return { client, clock, sockets, server: sockets[0] };
}

/** Acks turn `id` and starts reply m-2 in conversation c-1. */
function startReply(server, id) {
  server.push({ type: "ack", id, conversationId: "c-1", messageId: "m-1" });
  server.push({ type: "stream_start", conversationId: "c-1", messageId: "m-2", model: "sim" });
}

test("a reply whose text matches the server's sha256 is verified; one that does not is reported", async () => {
  const { client, server } = await connected();
  const errors = [];
  client.on("error", (e) => errors.push(e.code));

  const good = client.send("hi");
  startReply(server, good.id);
  server.push({ type: "stream_token", messageId: "m-2", seq: 1, token: "Grüße, " });
  server.push({ type: "stream_token", messageId: "m-2", seq: 2, token: "世界" });
  server.push({ type: "stream_complete", messageId: "m-2", lastSeq: 2, finishReason: "stop", sha256: sha256Hex("Grüße, 世界") });
  const done = await good.finished;
  assert.deepEqual([done.reply.text, done.reply.verified], ["Grüße, 世界", true]);

  const bad = client.send("again", { conversationId: "c-1" });
  server.push({ type: "ack", id: bad.id, conversationId: "c-1", messageId: "m-3" });
  server.push({ type: "stream_start", conversationId: "c-1", messageId: "m-4", model: "sim" });
  server.push({ type: "stream_token", messageId: "m-4", seq: 1, token: "text" });
  server.push({ type: "stream_complete", messageId: "m-4", lastSeq: 1, sha256: sha256Hex("other text") });
  const failed = await bad.finished;
  assert.equal(failed.reply.verified, false);
  assert.deepEqual(errors, ["checksum_mismatch"]);

  // Without a checksum nothing is claimed either way.
  const plain = client.send("third", { conversationId: "c-1" });
  server.push({ type: "ack", id: plain.id, conversationId: "c-1", messageId: "m-5" });
  server.push({ type: "stream_start", conversationId: "c-1", messageId: "m-6" });
  server.push({ type: "stream_complete", messageId: "m-6", lastSeq: 0 });
  assert.equal((await plain.finished).reply.verified, undefined);
  client.close();
});

test("stored messages with a sha256 are checked too", async () => {
  const { client, server } = await connected();
  const page = client.listMessages("c-1");
  server.push({ type: "messages", conversationId: "c-1", nextPageToken: "", messages: [
    { id: "m-1", role: "user", content: "hi", status: "complete", sha256: sha256Hex("hi") },
    { id: "m-2", role: "assistant", content: "changed", status: "complete", sha256: sha256Hex("original") },
    { id: "m-3", role: "assistant", content: "no sum", status: "complete" },
  ] });
  const { messages } = await page;
  assert.deepEqual(messages.map((m) => m.verified), [true, false, undefined]);
  client.close();
});

test("a connection silent for too long is pinged, then dropped and reconnected", async () => {
  const { client, clock, sockets, server } = await connected({ keepAliveMs: 10_000 });
  clock.advance(9_999);
  assert.deepEqual(server.sent, []);
  clock.advance(1);
  assert.deepEqual(server.sent, [{ type: "ping" }]);
  server.push({ type: "pong" });  // an answer: alive
  clock.advance(10_000);
  assert.deepEqual(server.sent, [{ type: "ping" }, { type: "ping" }]);
  assert.equal(client.state.status, "open");
  clock.advance(10_000);  // no answer to the second ping
  assert.equal(client.state.status, "reconnecting");
  assert.equal(client.state.lastError.code, "connection_failed");
  clock.advance(client.state.nextAttemptInMs);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sockets.length, 2, "a new connection is tried");
  client.close();
});

test("a cancelled reply keeps exactly the text up to the server's lastSeq", async () => {
  const { client, server } = await connected();
  const turn = client.send("long");
  startReply(server, turn.id);
  server.push({ type: "stream_token", messageId: "m-2", seq: 2, token: "one two" });
  server.push({ type: "stream_token", messageId: "m-2", seq: 3, token: " three" });
  server.push({ type: "stream_token", messageId: "m-2", seq: 5, token: " four five" });
  client.cancel("m-2");
  assert.deepEqual(server.sent.at(-1), { type: "cancel", messageId: "m-2" });
  server.push({ type: "stream_cancelled", messageId: "m-2", lastSeq: 3 });
  const done = await turn.finished;
  assert.deepEqual([done.reply.status, done.reply.text, done.reply.lastSeq], ["cancelled", "one two three", 3]);
  client.close();
});

test("a rate-limited message is sent again with the same id after retryAfterMs", async () => {
  const { client, clock, server } = await connected();
  const turn = client.send("hello");
  server.push({ type: "error", code: "rate_limited", message: "slow down", id: turn.id, retryAfterMs: 1500 });
  assert.equal(turn.status, "queued");
  clock.advance(1499);
  assert.equal(server.sent.filter((f) => f.type === "message").length, 1);
  clock.advance(1);
  assert.deepEqual(server.sent.filter((f) => f.type === "message").map((f) => f.id), [turn.id, turn.id]);
  startReply(server, turn.id);
  server.push({ type: "stream_complete", messageId: "m-2", lastSeq: 0 });
  assert.equal((await turn.finished).status, "done");

  // Other errors fail the turn with the protocol's code.
  const other = client.send("x", { conversationId: "gone" });
  server.push({ type: "error", code: "not_found", message: "no such conversation", id: other.id });
  const failed = await other.finished;
  assert.deepEqual([failed.status, failed.error.code, failed.error.id], ["failed", "not_found", other.id]);
  client.close();
});

test("a reply past its deadline ends interrupted with deadline_exceeded and keeps what streamed", async () => {
  const { client, server } = await connected();
  const turn = client.send("slow", { deadlineMs: 5000 });
  assert.deepEqual(server.sent[0], { type: "message", content: "slow", deadlineMs: 5000, id: turn.id });
  startReply(server, turn.id);
  server.push({ type: "stream_token", messageId: "m-2", seq: 1, token: "Part" });
  server.push({ type: "stream_interrupted", messageId: "m-2", lastSeq: 1, error: "deadline_exceeded",
    message: "the reply ran past its deadline", partialResponse: "Part", sha256: sha256Hex("Part") });
  const done = await turn.finished;
  assert.deepEqual([done.status, done.reply.status, done.reply.text, done.reply.verified, done.error.code],
    ["failed", "interrupted", "Part", true, "deadline_exceeded"]);
  client.close();
});
