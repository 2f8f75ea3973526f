// @parley/client against the real services on loopback ports: a reply whose connection is cut
// mid-stream ends with its whole text exactly once, equal to what the server stored; a message
// sent while offline goes out once when the connection is back; the back-off schedule with an
// injected clock; and the token provider called again after a refused handshake and before the
// token expires; and the React hook.
//
// Environment: PARLEY_BIN_DIR (the directory of the service binaries).

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import React from "react";
import TestRenderer, { act } from "react-test-renderer";
import WebSocket from "ws";

import { ParleyClient, ParleyError, backoffDelay, sha256Hex } from "../dist/index.js";
import { useParleyChat } from "../dist/react.js";
import { Relay, Service, refusedPort } from "./stack.mjs";

// About 40 tokens at 25 a second: a reply streams for well over a second, so a cut after its
// third token lands mid-reply.
const kEngineFlags = ["--engine=simulated", "--sim_ttft_ms=100", "--sim_tokens_per_second=25", "--sim_max_tokens=40"];
const kSecret = "a-test-secret-of-at-least-thirty-two-bytes";
const kQuickReconnect = { baseDelayMs: 20, maxDelayMs: 200, jitter: 0 };

let tempDir;
const services = [];
let edgeAddr;
let jwtEdgeAddr;

before(async () => {
  assert.ok(process.env.PARLEY_BIN_DIR, "PARLEY_BIN_DIR must name the service binaries' directory");
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-client-"));
  const secretFile = path.join(tempDir, "jwt.secret");
  fs.writeFileSync(secretFile, kSecret);
  const persistence = new Service("parley-persistence", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", `--store=sqlite:${path.join(tempDir, "parley.db")}`,
  ]);
  const inference = new Service("parley-inference", ["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", ...kEngineFlags]);
  services.push(persistence, inference);
  const [persistenceAddr, inferenceAddr] = await Promise.all([persistence.listening(), inference.listening()]);
  const edge = (...flags) => {
    const service = new Service("parley-edge", [
      "--listen=127.0.0.1:0", `--inference=${inferenceAddr}`, `--persistence=${persistenceAddr}`, ...flags,
    ]);
    services.push(service);
    return service.listening();
  };
  [edgeAddr, jwtEdgeAddr] = await Promise.all([edge("--allow_anonymous"), edge(`--jwt_secret_file=${secretFile}`)]);
});

after(async () => {
  for (const service of services.reverse()) await service.stop();
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
});

/** A `ws` WebSocket that records every frame the client sends and the subprotocols it offers. */
function recordingWebSocket() {
  const sent = [];
  const offered = [];
  class Recording extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      offered.push(protocols);
    }
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  }
  return { Recording, sent, offered };
}

/** Resolves with the first `event` value for which `predicate` holds. */
function next(client, event, predicate = () => true) {
  return new Promise((resolve) => {
    const stop = client.on(event, (value) => {
      if (!predicate(value)) return;
      stop();
      resolve(value);
    });
  });
}

/** The stored messages of a conversation, over the HTTP API, as `userId`. */
async function storedMessages(addr, conversationId, headers = {}, userId = "") {
  const query = userId ? `?userId=${encodeURIComponent(userId)}` : "";
  const response = await fetch(`http://${addr}/v1/conversations/${conversationId}/messages${query}`, { headers });
  assert.equal(response.status, 200);
  return (await response.json()).messages;
}

function userUrl(addr, userId) {
  return `ws://${addr}/ws/chat?userId=${encodeURIComponent(userId)}`;
}

test("a reply whose connection is cut mid-stream ends with its whole text exactly once, as stored", async () => {
  const relay = new Relay(edgeAddr);
  await relay.listen();
  const { Recording, sent } = recordingWebSocket();
  const userId = "cut-" + crypto.randomUUID();
  const client = new ParleyClient({ url: userUrl(relay.address, userId), WebSocket: Recording, reconnect: kQuickReconnect });
  const states = [];
  client.on("state", (state) => states.push(state.status));
  const deltas = [];
  client.on("replyText", ({ delta }) => deltas.push(delta));
  await next(client, "open");

  const turn = client.send("Tell me about lighthouses, at length.");
  const third = await next(client, "replyText", ({ seq }) => seq >= 3);
  const cutAt = third.seq;
  relay.cut();
  const reopened = await next(client, "open");
  assert.equal(reopened.reconnected, true);

  const done = await turn.finished;
  const reply = done.reply;
  assert.equal(done.status, "done");
  assert.equal(reply.status, "complete");
  const resumes = sent.filter((f) => f.type === "resume");
  assert.deepEqual(resumes, [{ type: "resume", messageId: reply.messageId, lastSeq: cutAt }],
    "the reply is resumed once, from the last seq received");
  assert.equal(sent.filter((f) => f.type === "message").length, 1, "the message was not sent again");

  const stored = await storedMessages(edgeAddr, done.conversationId, {}, userId);
  assert.deepEqual(stored.map((m) => [m.role, m.status]), [["user", "complete"], ["assistant", "complete"]]);
  assert.equal(reply.text, stored[1].content, "the text equals the stored reply");
  assert.equal(deltas.join(""), stored[1].content, "every piece arrived exactly once");
  assert.equal(reply.lastSeq, stored[1].lastSeq);
  assert.ok(reply.lastSeq > cutAt, "part of the reply came after the cut");
  assert.equal(reply.sha256, stored[1].sha256, "the server's checksum of the stored reply");
  assert.equal(reply.verified, true, "the text put together across the cut matches it");
  assert.ok(states.includes("reconnecting"));
  client.close();
  await relay.close();
});

test("a message whose connection drops before its ack is stored and answered once", async () => {
  const relay = new Relay(edgeAddr);
  await relay.listen();
  const { Recording, sent } = recordingWebSocket();
  const userId = "ack-" + crypto.randomUUID();
  const client = new ParleyClient({ url: userUrl(relay.address, userId), WebSocket: Recording, reconnect: kQuickReconnect });
  await next(client, "open");
  const turn = client.send("Are you there?");
  relay.cut();  // the frame may or may not have reached the edge
  const done = await turn.finished;
  assert.equal(done.reply.status, "complete");
  assert.ok(sent.filter((f) => f.type === "message").every((f) => f.id === turn.id), "every send had the same id");
  const stored = await storedMessages(edgeAddr, done.conversationId, {}, userId);
  assert.deepEqual(stored.map((m) => [m.role, m.content === "Are you there?"]),
    [["user", true], ["assistant", false]], "one message, one reply");
  assert.equal(done.reply.text, stored[1].content);
  assert.equal(done.reply.verified, true);
  client.close();
  await relay.close();
});

test("a message sent while offline is queued and sent once the connection is back", async () => {
  const relay = new Relay(edgeAddr);
  await relay.listen();
  relay.down = true;
  const { Recording, sent } = recordingWebSocket();
  const userId = "queue-" + crypto.randomUUID();
  const client = new ParleyClient({ url: userUrl(relay.address, userId), WebSocket: Recording, reconnect: kQuickReconnect });
  const failed = await next(client, "state", (s) => s.status === "reconnecting" && s.failedAttempts >= 1);
  assert.equal(failed.queued, 0);

  const turn = client.send("Sent while offline");
  assert.equal(turn.status, "queued");
  assert.equal(client.state.queued, 1);
  assert.equal(sent.length, 0, "nothing goes out without a connection");
  relay.down = false;

  const done = await turn.finished;
  assert.equal(done.reply.status, "complete");
  assert.deepEqual(sent.filter((f) => f.type === "message"),
    [{ type: "message", content: "Sent while offline", id: turn.id }], "sent exactly once, with its id");
  const stored = await storedMessages(edgeAddr, done.conversationId, {}, userId);
  assert.deepEqual(stored.map((m) => [m.role, m.status]), [["user", "complete"], ["assistant", "complete"]]);
  assert.equal(stored[0].content, "Sent while offline");
  assert.equal(done.reply.text, stored[1].content);
  assert.equal(client.state.queued, 0);

  // History and paging over the same connection.
  const { conversations } = await client.listConversations({ pageSize: 10 });
  assert.deepEqual(conversations.map((c) => c.id), [done.conversationId]);
  const page = await client.listMessages(done.conversationId, { pageSize: 1 });
  assert.equal(page.messages.length, 1);
  assert.ok(page.nextPageToken);
  const rest = await client.listMessages(done.conversationId, { pageToken: page.nextPageToken });
  assert.deepEqual([...page.messages, ...rest.messages].map((m) => m.id), stored.map((m) => m.id));
  await assert.rejects(client.history("no-such-conversation"), (e) => e instanceof ParleyError && e.code === "not_found");
  client.close();
  await relay.close();
});

/** Timers that run only when the test moves time on. */
class FakeClock {
  constructor(start) {
    this.time = start;
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
  /** Moves time on by `ms`, running every timer due by then in order. */
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

test("reconnect attempts back off 1, 2, 4, 8, 16 s, capped at 30 s, and stop after maxAttempts", async () => {
  const port = await refusedPort();
  const clock = new FakeClock(1_000_000);
  const client = new ParleyClient({
    url: `ws://127.0.0.1:${port}/ws/chat`, WebSocket, clock, random: () => 0.5, reconnect: { maxAttempts: 8 },
  });
  const delays = [];
  for (let attempt = 1; attempt < 8; ++attempt) {
    const state = await next(client, "state", (s) => s.status === "reconnecting" && s.failedAttempts === attempt);
    assert.equal(state.nextAttemptAt, clock.now() + state.nextAttemptInMs, "the banner can show the next attempt's time");
    assert.equal(state.lastError.code, "connection_failed");
    delays.push(state.nextAttemptInMs);
    clock.advance(state.nextAttemptInMs - 1);
    assert.equal(client.state.failedAttempts, attempt, "no attempt before its time");
    clock.advance(1);
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  const closed = await next(client, "state", (s) => s.status === "closed");
  assert.equal(closed.failedAttempts, 8);

  // Jitter moves each delay by at most a fifth, never past the cap.
  assert.equal(backoffDelay(0, {}, () => 0), 800);
  assert.equal(backoffDelay(2, {}, () => 0.999999), 4800);
  assert.equal(backoffDelay(9, {}, () => 0.999999), 30000);
  assert.equal(backoffDelay(9, {}, () => 0), 24000);
});

test("a connection refused with only an error event counts as one failed attempt", async () => {
  const clock = new FakeClock(0);
  let constructed = 0;
  // Node 20's experimental WebSocket fires only `error` for a refused connection.
  class ErrorOnly {
    constructor() {
      ++constructed;
      this.readyState = 0;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      queueMicrotask(() => this.onerror?.({ message: "connect ECONNREFUSED" }));
    }
    send() { throw new Error("not open"); }
    close() {}
  }
  const client = new ParleyClient({ url: "ws://127.0.0.1:1/ws/chat", WebSocket: ErrorOnly, clock, random: () => 0.5 });
  let state = await next(client, "state", (s) => s.status === "reconnecting" && s.failedAttempts === 1);
  assert.equal(state.nextAttemptInMs, 1000);
  assert.equal(state.lastError.message, "connect ECONNREFUSED");
  clock.advance(1000);
  state = await next(client, "state", (s) => s.status === "reconnecting" && s.failedAttempts === 2);
  assert.equal(state.nextAttemptInMs, 2000);
  assert.equal(constructed, 2);
  client.close();
  assert.equal(client.state.status, "closed");
});

function signToken(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${unsigned}.${crypto.createHmac("sha256", kSecret).update(unsigned).digest("base64url")}`;
}

test("the token provider is asked again after a refused handshake and before the token expires", async () => {
  const relay = new Relay(jwtEdgeAddr);
  await relay.listen();
  const now = Math.floor(Date.now() / 1000);
  const tokens = [
    signToken({ sub: "token-user", exp: now - 3600 }),  // expired: the edge answers 401
    signToken({ sub: "token-user", exp: now + 3600 }),
    signToken({ sub: "token-user", exp: now + 7200 }),
  ];
  let calls = 0;
  const token = () => tokens[Math.min(calls++, tokens.length - 1)];
  const clock = new FakeClock(now * 1000);
  const { Recording, offered } = recordingWebSocket();
  const client = new ParleyClient({
    url: `ws://${relay.address}/ws/chat`, WebSocket: Recording, token, clock, random: () => 0.5,
    refreshBeforeExpiryMs: 60_000, keepAliveMs: 0,  // the clock jumps an hour: no pings
  });
  const refused = await next(client, "state", (s) => s.status === "reconnecting");
  assert.match(refused.lastError.message, /401/);
  assert.equal(calls, 1);
  clock.advance(refused.nextAttemptInMs);
  await next(client, "open");
  assert.equal(calls, 2, "a new token after the refusal");
  assert.deepEqual(offered, [["parley.v1", `bearer.${tokens[0]}`], ["parley.v1", `bearer.${tokens[1]}`]]);

  // The user is the token's: a turn runs as token-user.
  const turn = client.send("Hello with a token");
  const done = await turn.finished;
  assert.equal(done.reply.status, "complete");
  const stored = await storedMessages(jwtEdgeAddr, done.conversationId, { Authorization: `Bearer ${tokens[1]}` });
  assert.equal(stored[1].content, done.reply.text);

  // A minute before the second token expires the provider is asked again, and the next
  // connection offers the new token.
  clock.advance(now * 1000 + 3600_000 - 60_000 - clock.now() - 1);
  assert.equal(calls, 2);
  clock.advance(1);
  await new Promise((resolve) => setImmediate(resolve));  // the provider's answer is a resolved promise
  assert.equal(calls, 3);
  relay.cut();
  const dropped = await next(client, "state", (s) => s.status === "reconnecting");
  clock.advance(dropped.nextAttemptInMs);
  await next(client, "open");
  assert.equal(calls, 3, "the fresh token needs no further call");
  assert.deepEqual(offered[2], ["parley.v1", `bearer.${tokens[2]}`]);
  client.close();
  await relay.close();
});

test("sha256Hex is SHA-256 of the UTF-8 bytes, as the server computes it", () => {
  for (const text of ["", "abc", "Grüße, 世界 🌍", "x".repeat(1000)]) {
    assert.equal(sha256Hex(text), crypto.createHash("sha256").update(text, "utf8").digest("hex"));
  }
});

test("useParleyChat shows the message, the reply while it streams, and the stored conversation", async () => {
  const userId = "hook-" + crypto.randomUUID();
  const renders = [];
  const waiters = [];
  const rendered = (predicate) => {
    const found = renders.find(predicate);
    return found ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ predicate, resolve }));
  };
  function Chat(props) {
    const chat = useParleyChat(props);
    React.useEffect(() => {
      renders.push(chat);
      for (const waiter of waiters.splice(0)) {
        if (waiter.predicate(chat)) waiter.resolve(chat);
        else waiters.push(waiter);
      }
    });
    return null;
  }
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(React.createElement(Chat, {
      connection: { url: userUrl(edgeAddr, userId), WebSocket, reconnect: kQuickReconnect },
    }));
  });
  const online = await rendered((c) => c.isConnected);
  online.send("Hello from a React hook");
  const streaming = await rendered((c) => c.isStreaming && c.streamingText.length > 0);
  assert.equal(streaming.messages[0].content, "Hello from a React hook");
  const done = await rendered((c) => !c.isStreaming && c.messages.length === 2 && c.messages[1].status === "complete");
  assert.equal(done.error, null);
  assert.equal(done.streamingText, "");
  const stored = await storedMessages(edgeAddr, done.conversationId, {}, userId);
  assert.deepEqual(done.messages.map(({ id, role, content, status }) => ({ id, role, content, status })),
    stored.map(({ id, role, content, status }) => ({ id, role, content, status })));
  const client = done.client;
  await act(async () => renderer.unmount());
  assert.equal(client.state.status, "closed", "the hook's own client closes with it");
});
