// The Socket.IO dialect (namespace /chat at /socket.io/) driven by the real socket.io-client v4
// from npm, the way seed 004's client uses it, against the three real services on loopback:
// HTTP long-polling with the upgrade to WebSocket and an Authorization header, a WebSocket alone
// with auth.token, one chat:send's exact event sequence and its stored text, acknowledgements,
// two sockets of one user in one room, another user kept out of a room, a refused token, a
// session the edge does not know (the client reconnects), and conversations the client names:
// joined before they exist, and continued from the copilot dialect with the model seeing the
// earlier turn. Last, one conversation in every dialect and the edge's /metrics labelled by
// dialect, checked with promtool.
//
// Environment (set by CTest):
//   PARLEY_BIN_DIR        directory holding parley-edge, parley-inference, parley-persistence
//   PARLEY_NODE_MODULES   node_modules directory holding socket.io-client

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { Service } from "../../clients/js/test/stack.mjs";

const binDir = process.env.PARLEY_BIN_DIR;
const nodeModules = process.env.PARLEY_NODE_MODULES;
const require = createRequire(path.join(nodeModules ?? ".", "resolve-from-here.js"));
const { io } = require("socket.io-client");

// Generous: it only stops a broken run from hanging, on a busy machine.
const kStepTimeoutMs = 30_000;

const kSecret = "an-hs256-secret-of-at-least-32-bytes!!";
const kIssuer = "https://auth.parley.test/";
const kAudience = "parley";

/** An HS256 JWT the edges accept (or, with another secret, refuse). */
function token(sub, extraClaims = {}, secret = kSecret) {
  const now = Math.floor(Date.now() / 1000);
  const encode = (object) => Buffer.from(JSON.stringify(object)).toString("base64url");
  const head = encode({ alg: "HS256", typ: "JWT" });
  const body = encode({ sub, iss: kIssuer, aud: kAudience, iat: now, exp: now + 600, ...extraClaims });
  const signature = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

/** Everything a socket receives, in order, with waiting on a predicate. */
class EventLog {
  constructor(socket) {
    this.events = [];
    this.waiters = [];
    socket.onAny((name, ...args) => this.push({ name, args }));
  }

  push(event) {
    this.events.push(event);
    this.waiters = this.waiters.filter(({ predicate, resolve }) => {
      const found = this.events.find(predicate);
      if (found) resolve(found);
      return !found;
    });
  }

  named(name) { return this.events.filter((event) => event.name === name); }

  waitFor(predicate, what) {
    const found = this.events.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
          `no ${what}; received: ${JSON.stringify(this.events)}`)), kStepTimeoutMs);
      this.waiters.push({ predicate, resolve: (event) => { clearTimeout(timer); resolve(event); } });
    });
  }

  waitForEvent(name, predicate = () => true) {
    return this.waitFor((event) => event.name === name && predicate(event.args[0]), name);
  }
}

/** Resolves with the arguments of the next `name` event on `emitter`. */
function once(emitter, name) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name}`)), kStepTimeoutMs);
    emitter.once(name, (...args) => { clearTimeout(timer); resolve(args); });
  });
}

/** Emits with an acknowledgement callback and resolves with its argument. */
function emitWithAck(socket, name, payload) {
  return socket.timeout(kStepTimeoutMs).emitWithAck(name, payload);
}

let tempDir;
let secretFile;
let persistenceAddr;
let inferenceAddr;
const services = [];
let edgeAddr;       // JWT edge
let devEdgeAddr;    // development mode (--allow_anonymous)
let secondEdgeAddr; // another JWT edge on the same store: a session of the first is unknown here
const sockets = new Set();

/** A socket of the seed's client (default transports, reconnection on), closed after the test. */
function connect(addr, options) {
  const socket = io(`http://${addr}/chat`, options);
  sockets.add(socket);
  return socket;
}

async function connected(socket) {
  if (!socket.connected) await once(socket, "connect");
  return socket;
}

function unique(prefix) { return `${prefix}-${crypto.randomBytes(4).toString("hex")}`; }

/** GET on the edge's HTTP API as `bearer` (a token) answers with JSON. */
async function apiGet(addr, target, bearer) {
  const response = await fetch(`http://${addr}${target}`,
                               { headers: bearer ? { Authorization: `Bearer ${bearer}` } : {} });
  assert.equal(response.status, 200, `${target}: ${await response.clone().text()}`);
  return response.json();
}

before(async () => {
  assert.ok(binDir, "PARLEY_BIN_DIR must name the directory of the service binaries");
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-socketio-"));
  secretFile = path.join(tempDir, "jwt-secret");
  fs.writeFileSync(secretFile, `${kSecret}\n`);

  const persistence = new Service("parley-persistence", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
    `--store=sqlite:${path.join(tempDir, "parley.db")}`,
  ]);
  // Replies of a dozen tokens, a few milliseconds apart: several chat:streaming events each.
  const inference = new Service("parley-inference", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
    "--sim_ttft_ms=20", "--sim_tokens_per_second=200", "--sim_max_tokens=12",
  ]);
  services.push(persistence, inference);
  [persistenceAddr, inferenceAddr] =
      await Promise.all([persistence.listening(), inference.listening()]);
  const startEdge = (extra) => {
    const edge = new Service("parley-edge", [
      "--listen=127.0.0.1:0", `--inference=${inferenceAddr}`, `--persistence=${persistenceAddr}`,
      ...extra,
    ]);
    services.push(edge);
    return edge.listening();
  };
  const jwtFlags = [`--jwt_secret_file=${secretFile}`, `--jwt_issuer=${kIssuer}`,
                    `--jwt_audience=${kAudience}`];
  [edgeAddr, devEdgeAddr, secondEdgeAddr] = await Promise.all(
      [startEdge(jwtFlags), startEdge(["--allow_anonymous"]), startEdge(jwtFlags)]);
});

after(async () => {
  for (const socket of sockets) socket.close();
  // Edges first, so they do not see their backends disappear under a live turn.
  for (const service of services.reverse()) await service.stop();
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
});

/**
 * Sends one chat:send on `socket` and waits for its chat:complete; returns the chat:* events of
 * that turn as the socket saw them, and the acknowledgement.
 */
async function sendAndComplete(socket, log, conversationId, content) {
  const start = log.events.length;
  const ack = await emitWithAck(socket, "chat:send", { conversationId, content, role: "user" });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  await log.waitFor((event, index) => event.name === "chat:complete" &&
                    log.events.indexOf(event) >= start, "chat:complete");
  return { ack, events: log.events.slice(start).filter((event) => event.name.startsWith("chat:")) };
}

/**
 * Checks the exact sequence and fields of one turn: chat:message (the user's), chat:thinking,
 * chat:streaming… (isComplete false), chat:streaming (chunk '', isComplete true), chat:message
 * (the assistant's stored message), chat:complete. Returns the reply's text and ids.
 */
function checkTurn(events, conversationId, content, ack) {
  // A message without a conversationId starts a conversation: its id comes with the first event.
  conversationId ??= events[0]?.args[0]?.conversationId;
  assert.ok(conversationId, "every event names the conversation");
  const names = events.map((event) => event.name);
  const streamed = names.filter((name) => name === "chat:streaming").length;
  assert.ok(streamed >= 3, `a few chunks and the end: ${names}`);
  assert.deepEqual(names, ["chat:message", "chat:thinking",
                           ...Array(streamed).fill("chat:streaming"), "chat:message",
                           "chat:complete"]);
  const payloads = events.map((event) => event.args[0]);
  const [userMessage, thinking] = payloads;
  const isoTime = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

  assert.equal(userMessage.conversationId, conversationId);
  assert.deepEqual(Object.keys(userMessage.message).sort(),
                   ["content", "conversationId", "createdAt", "id", "role"]);
  assert.equal(userMessage.message.content, content);
  assert.equal(userMessage.message.role, "user");
  assert.equal(userMessage.message.conversationId, conversationId);
  assert.match(userMessage.message.createdAt, isoTime);
  if (ack) assert.deepEqual(ack, { ok: true, messageId: userMessage.message.id });

  assert.deepEqual(thinking, { conversationId, status: "processing" });

  const chunks = payloads.slice(2, 2 + streamed);
  const replyId = chunks[0].messageId;
  assert.ok(replyId && replyId !== userMessage.message.id);
  for (const [index, chunk] of chunks.entries()) {
    const last = index === chunks.length - 1;
    assert.deepEqual(Object.keys(chunk).sort(), ["chunk", "conversationId", "isComplete", "messageId"]);
    assert.equal(chunk.conversationId, conversationId);
    assert.equal(chunk.messageId, replyId);
    assert.equal(chunk.isComplete, last);
    if (last) assert.equal(chunk.chunk, "");
    else assert.ok(typeof chunk.chunk === "string" && chunk.chunk.length > 0);
  }
  const text = chunks.map((chunk) => chunk.chunk).join("");

  const assistant = payloads[2 + streamed];
  assert.equal(assistant.conversationId, conversationId);
  assert.deepEqual(assistant.message, {
    id: replyId, content: text, role: "assistant", conversationId,
    createdAt: assistant.message.createdAt,
  });
  assert.match(assistant.message.createdAt, isoTime);

  assert.deepEqual(payloads.at(-1), { conversationId, messageId: replyId });
  return { text, replyId, userMessageId: userMessage.message.id, conversationId };
}

/** The stored messages of a conversation, through the HTTP API. */
async function storedMessages(addr, conversationId, bearer) {
  const page = await apiGet(addr, `/v1/conversations/${encodeURIComponent(conversationId)}/messages`,
                            bearer);
  return page.messages;
}

test("default transports with an Authorization header: polling first, then the upgrade to WebSocket",
     async () => {
  const alice = token("alice-upgrade");
  const socket = connect(edgeAddr, { extraHeaders: { Authorization: `Bearer ${alice}` } });
  const log = new EventLog(socket);
  const [firstTransport, upgradedTo] = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no upgrade")), kStepTimeoutMs);
    socket.io.once("open", () => {
      const engine = socket.io.engine;
      const first = engine.transport.name;
      engine.once("upgrade", (transport) => { clearTimeout(timer); resolve([first, transport.name]); });
    });
  });
  assert.equal(firstTransport, "polling");
  assert.equal(upgradedTo, "websocket");
  await connected(socket);
  assert.equal(socket.io.engine.transport.name, "websocket");

  const { ack, events } = await sendAndComplete(socket, log, undefined, "Hello over polling!");
  const { text, conversationId } = checkTurn(events, undefined, "Hello over polling!", ack);
  const stored = await storedMessages(edgeAddr, conversationId, alice);
  assert.deepEqual(stored.map((message) => [message.role, message.content]),
                   [["user", "Hello over polling!"], ["assistant", text]]);
});

test("transports:['websocket'] with auth.token: one chat:send's exact events, and the stored text",
     async () => {
  const bob = token("bob-websocket");
  const socket = connect(edgeAddr, { transports: ["websocket"], auth: { token: bob } });
  const log = new EventLog(socket);
  await connected(socket);
  assert.equal(socket.io.engine.transport.name, "websocket");

  const { ack, events } = await sendAndComplete(socket, log, undefined, "Tell me a story.");
  const { text, replyId, userMessageId, conversationId } =
      checkTurn(events, undefined, "Tell me a story.", ack);

  const stored = await storedMessages(edgeAddr, conversationId, bob);
  assert.equal(stored.length, 2);
  assert.equal(stored[0].id, userMessageId);
  assert.equal(stored[0].content, "Tell me a story.");
  assert.equal(stored[1].id, replyId);
  assert.equal(stored[1].content, text, "the stored reply is exactly the streamed chunks");
  assert.equal(stored[1].status, "complete");

  // A second message continues the same conversation.
  const second = await sendAndComplete(socket, log, conversationId, "And another one.");
  checkTurn(second.events, conversationId, "And another one.", second.ack);
  assert.equal((await storedMessages(edgeAddr, conversationId, bob)).length, 4);
});

test("acknowledgements: {ok:true,messageId} for a stored message, {ok:false,error} and chat:error for a bad one",
     async () => {
  const carol = token("carol-acks");
  const socket = connect(edgeAddr, { transports: ["websocket"], auth: { token: carol } });
  const log = new EventLog(socket);
  await connected(socket);
  const first = await sendAndComplete(socket, log, undefined, "Start a conversation.");
  const { conversationId } = checkTurn(first.events, undefined, "Start a conversation.", first.ack);

  const refused = await emitWithAck(socket, "chat:send", { conversationId, content: "", role: "user" });
  assert.equal(refused.ok, false);
  assert.equal(typeof refused.error, "string");
  assert.ok(refused.error.length > 0);
  const error = await log.waitForEvent("chat:error");
  assert.equal(error.args[0].conversationId, conversationId);
  assert.equal(typeof error.args[0].error, "string");

  const unknown = await emitWithAck(socket, "chat:delete", { conversationId });
  assert.equal(unknown.ok, false);
  assert.match(unknown.error, /chat:delete/);

  const joined = await emitWithAck(socket, "chat:join", { conversationId });
  assert.equal(joined.ok, true);

  // Nothing was stored for the refused message, and the socket still works.
  const { ack, events } = await sendAndComplete(socket, log, conversationId, "Now a real one.");
  checkTurn(events, conversationId, "Now a real one.", ack);
  const stored = await storedMessages(edgeAddr, conversationId, carol);
  assert.deepEqual(stored.map((message) => message.role), ["user", "assistant", "user", "assistant"]);
});

test("two sockets of one user in one room: join, typing, and the stream seen by both", async () => {
  const dana = token("dana-room", { name: "Dana Example" });
  const first = connect(edgeAddr, { extraHeaders: { Authorization: `Bearer ${dana}` } });
  const second = connect(edgeAddr, { transports: ["websocket"], auth: { token: dana } });
  const firstLog = new EventLog(first);
  const secondLog = new EventLog(second);
  await Promise.all([connected(first), connected(second)]);
  const opening = await sendAndComplete(first, firstLog, undefined, "Let us talk.");
  const { conversationId } = checkTurn(opening.events, undefined, "Let us talk.", opening.ack);

  first.emit("chat:join", { conversationId });
  assert.deepEqual((await firstLog.waitForEvent("chat:joined")).args[0], { conversationId });
  second.emit("chat:join", { conversationId });
  assert.deepEqual((await secondLog.waitForEvent("chat:joined")).args[0], { conversationId });
  assert.deepEqual((await firstLog.waitForEvent("chat:user-joined")).args[0],
                   { userId: "dana-room", username: "Dana Example" });

  second.emit("chat:typing", { conversationId, isTyping: true });
  assert.deepEqual((await firstLog.waitForEvent("chat:user-typing")).args[0],
                   { userId: "dana-room", username: "Dana Example", isTyping: true });

  const secondStart = secondLog.events.length;
  const { ack, events } = await sendAndComplete(first, firstLog, conversationId, "Both of you, listen.");
  const { replyId } = checkTurn(events, conversationId, "Both of you, listen.", ack);
  await secondLog.waitForEvent("chat:complete", (payload) => payload.messageId === replyId);
  const secondTurn = secondLog.events.slice(secondStart).filter(
      (event) => event.name.startsWith("chat:") && event.name !== "chat:user-typing");
  checkTurn(secondTurn, conversationId, "Both of you, listen.");
  assert.deepEqual(secondTurn, events, "the other socket saw exactly the sender's events");
  assert.equal(secondLog.named("chat:user-typing").length, 0, "typing is not echoed to the typist");

  second.emit("chat:leave", { conversationId });
  assert.deepEqual((await firstLog.waitForEvent("chat:user-left")).args[0],
                   { userId: "dana-room", username: "Dana Example" });
});

test("two sockets of one user on different edges: join, typing, and the stream seen by both",
     async () => {
  const erin = token("erin-edges", { name: "Erin Example" });
  const first = connect(edgeAddr, { transports: ["websocket"], auth: { token: erin } });
  const second = connect(secondEdgeAddr, { transports: ["websocket"], auth: { token: erin } });
  const firstLog = new EventLog(first);
  const secondLog = new EventLog(second);
  await Promise.all([connected(first), connected(second)]);
  const opening = await sendAndComplete(first, firstLog, undefined, "Across edges.");
  const { conversationId } = checkTurn(opening.events, undefined, "Across edges.", opening.ack);

  first.emit("chat:join", { conversationId });
  assert.deepEqual((await firstLog.waitForEvent("chat:joined")).args[0], { conversationId });
  second.emit("chat:join", { conversationId });
  assert.deepEqual((await secondLog.waitForEvent("chat:joined")).args[0], { conversationId });
  assert.deepEqual((await firstLog.waitForEvent("chat:user-joined")).args[0],
                   { userId: "erin-edges", username: "Erin Example" });

  second.emit("chat:typing", { conversationId, isTyping: true });
  assert.deepEqual((await firstLog.waitForEvent("chat:user-typing")).args[0],
                   { userId: "erin-edges", username: "Erin Example", isTyping: true });

  const secondStart = secondLog.events.length;
  const { ack, events } = await sendAndComplete(first, firstLog, conversationId, "Hear me there.");
  const { replyId, text } = checkTurn(events, conversationId, "Hear me there.", ack);
  await secondLog.waitForEvent("chat:complete", (payload) => payload.messageId === replyId);
  // The other edge follows the stored reply: the same events, its chunks perhaps merged. (The
  // first socket's own join may reach this edge at any point, even now: it is presence, not part
  // of the reply.)
  const seen = secondLog.events.slice(secondStart).filter(
      (event) => event.name.startsWith("chat:") && event.name !== "chat:user-joined");
  const names = seen.map((event) => event.name);
  assert.deepEqual(names.filter((name) => name !== "chat:streaming"),
                   ["chat:message", "chat:thinking", "chat:message", "chat:complete"]);
  assert.equal(seen[0].args[0].message.content, "Hear me there.");
  assert.equal(seen.filter((event) => event.name === "chat:streaming")
                   .map((event) => event.args[0].chunk).join(""), text);
  assert.deepEqual(seen.at(-2).args[0].message.content, text);
  assert.equal(secondLog.named("chat:user-typing").length, 0, "typing is not echoed to the typist");

  second.emit("chat:leave", { conversationId });
  assert.deepEqual((await firstLog.waitForEvent("chat:user-left")).args[0],
                   { userId: "erin-edges", username: "Erin Example" });
});

test("a socket of another user is refused from a room of a Parley-generated id and sees nothing",
     async () => {
  const erin = token("erin-owner");
  const frank = token("frank-intruder");
  const owner = connect(edgeAddr, { transports: ["websocket"], auth: { token: erin } });
  const intruder = connect(edgeAddr, { transports: ["websocket"], auth: { token: frank } });
  const ownerLog = new EventLog(owner);
  const intruderLog = new EventLog(intruder);
  await Promise.all([connected(owner), connected(intruder)]);

  // A message without a conversationId starts a conversation with an id Parley generates.
  const first = await sendAndComplete(owner, ownerLog, undefined, "A secret plan.");
  const conversationId = first.events[0].args[0].conversationId;
  assert.ok(conversationId);

  const refused = await emitWithAck(intruder, "chat:join", { conversationId });
  assert.equal(refused.ok, false);
  const error = await intruderLog.waitForEvent("chat:error");
  assert.equal(error.args[0].conversationId, conversationId);

  await sendAndComplete(owner, ownerLog, conversationId, "More of the plan.");
  // A round trip on the intruder's socket after the owner's turn ended: anything relayed to it
  // would have arrived before this answer.
  const again = await emitWithAck(intruder, "chat:join", { conversationId });
  assert.equal(again.ok, false);
  assert.deepEqual(intruderLog.events.map((event) => event.name), ["chat:error", "chat:error"],
                   "the intruder saw nothing of the owner's conversation");
  // And the intruder's own "conversationId" of that name reaches nothing of the owner's.
  const response = await fetch(
      `http://${edgeAddr}/v1/conversations/${encodeURIComponent(conversationId)}/messages`,
      { headers: { Authorization: `Bearer ${frank}` } });
  assert.equal(response.status, 404);
});

test("a bad token: the handshake succeeds, connect_error fires once with the server's message, no retry",
     async () => {
  for (const options of [
    { extraHeaders: { Authorization: `Bearer ${token("mallory", {}, "a-different-secret-also-32-bytes-long!!")}` } },
    { transports: ["websocket"], auth: { token: "not.a.jwt" } },
    { transports: ["websocket"], auth: { token: "null" } },  // no token, and no development mode
  ]) {
    const socket = connect(edgeAddr, options);
    const errors = [];
    socket.on("connect_error", (error) => errors.push(error));
    const [error] = await once(socket, "connect_error");
    assert.equal(typeof error.message, "string");
    assert.ok(!/xhr|websocket error|timeout/.test(error.message),
              `the namespace refused it, not the transport: ${error.message}`);
    assert.equal(socket.connected, false);
    assert.equal(socket.active, false, "socket.io-client will not retry by itself");
    socket.close();
    assert.equal(errors.length, 1);
  }
});

test("development mode: the userId query or auth.userId names the user; a \"null\" token is no token",
     async () => {
  const viaQuery = connect(`${devEdgeAddr}`, { query: { userId: "dev-gina" }, transports: ["polling"] });
  const viaAuth = connect(devEdgeAddr, { transports: ["websocket"],
                                         auth: { token: "null", userId: "dev-gina" } });
  const logs = [new EventLog(viaQuery), new EventLog(viaAuth)];
  await Promise.all([connected(viaQuery), connected(viaAuth)]);
  const first = await sendAndComplete(viaQuery, logs[0], undefined, "From the query.");
  const { conversationId } = checkTurn(first.events, undefined, "From the query.", first.ack);
  const second = await sendAndComplete(viaAuth, logs[1], conversationId, "From auth.");
  checkTurn(second.events, conversationId, "From auth.", second.ack);
  const page = await apiGet(devEdgeAddr,
      `/v1/conversations/${encodeURIComponent(conversationId)}/messages?userId=dev-gina`);
  assert.equal(page.messages.length, 4, "both sockets are one user with one conversation");
});

test("a session the edge does not know (another replica): HTTP 400 Session ID unknown, and the client reconnects",
     async () => {
  // A stand-in for a load balancer without affinity: forwards to the first edge until told
  // otherwise, and records what the edges answered.
  let target = edgeAddr;
  const answers = [];
  const proxy = http.createServer((request, response) => {
    const [host, port] = target.split(":");
    const upstream = http.request({ host, port, method: request.method, path: request.url,
                                    headers: request.headers }, (reply) => {
      const chunks = [];
      reply.on("data", (chunk) => chunks.push(chunk));
      reply.on("end", () => {
        const body = Buffer.concat(chunks);
        answers.push({ to: `${host}:${port}`, status: reply.statusCode, body: body.toString() });
        response.writeHead(reply.statusCode, reply.headers);
        response.end(body);
      });
    });
    upstream.on("error", () => response.destroy());
    request.pipe(upstream);
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  try {
    const hana = token("hana-reconnect");
    const socket = connect(`127.0.0.1:${proxy.address().port}`, {
      transports: ["polling"], extraHeaders: { Authorization: `Bearer ${hana}` },
    });
    const log = new EventLog(socket);
    await connected(socket);
    const firstSession = socket.io.engine.id;

    target = secondEdgeAddr;
    const reconnected = once(socket, "connect");
    const disconnected = once(socket, "disconnect");
    socket.emit("chat:typing", { conversationId: "conv-anything", isTyping: true });
    const [reason] = await disconnected;
    assert.equal(reason, "transport error");
    await reconnected;
    assert.notEqual(socket.io.engine.id, firstSession);
    assert.ok(answers.some((answer) => answer.to === secondEdgeAddr && answer.status === 400 &&
                           answer.body === '{"code":1,"message":"Session ID unknown"}'),
              JSON.stringify(answers));

    // The new session on the other edge works.
    const { ack, events } = await sendAndComplete(socket, log, undefined, "Still there?");
    checkTurn(events, undefined, "Still there?", ack);
  } finally {
    for (const socket of sockets) socket.close();
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
});

/** The user's conversations named `name` (clientConversationId), through the HTTP API. */
async function conversationsNamed(addr, name, bearer) {
  const page = await apiGet(addr, "/v1/conversations", bearer);
  return page.conversations.filter((conversation) => conversation.clientConversationId === name);
}

test("chat:join of a name not used yet: chat:joined, nothing stored until the first chat:send, which creates it for every socket in the room",
     async () => {
  const ivy = token("ivy-named");
  const name = unique("conv");
  const watcher = connect(edgeAddr, { transports: ["websocket"], auth: { token: ivy } });
  const sender = connect(edgeAddr, { extraHeaders: { Authorization: `Bearer ${ivy}` } });
  const watcherLog = new EventLog(watcher);
  const senderLog = new EventLog(sender);
  await Promise.all([connected(watcher), connected(sender)]);

  const joined = await emitWithAck(watcher, "chat:join", { conversationId: name });
  assert.equal(joined.ok, true, JSON.stringify(joined));
  assert.deepEqual((await watcherLog.waitForEvent("chat:joined")).args[0], { conversationId: name });
  const before = await apiGet(edgeAddr, "/v1/conversations", ivy);
  assert.deepEqual(before.conversations, [], "joining a name creates nothing");

  const watcherStart = watcherLog.events.length;
  const { ack, events } = await sendAndComplete(sender, senderLog, name, "First words.");
  const { text, replyId } = checkTurn(events, name, "First words.", ack);
  await watcherLog.waitForEvent("chat:complete", (payload) => payload.messageId === replyId);
  const seen = watcherLog.events.slice(watcherStart).filter((event) => event.name.startsWith("chat:"));
  assert.deepEqual(seen, events, "the socket that joined the name saw the turn that created it");

  const named = await conversationsNamed(edgeAddr, name, ivy);
  assert.equal(named.length, 1);
  assert.match(named[0].id, /^[0-9a-f]{32}$/);
  assert.deepEqual((await storedMessages(edgeAddr, named[0].id, ivy)).map((m) => m.content),
                   ["First words.", text]);

  // The name goes on reaching it, from the socket that joined it too.
  const again = await sendAndComplete(watcher, watcherLog, name, "More words.");
  checkTurn(again.events, name, "More words.", again.ack);
  assert.equal((await conversationsNamed(edgeAddr, name, ivy)).length, 1);
  assert.equal((await storedMessages(edgeAddr, named[0].id, ivy)).length, 4);
});

/**
 * An OpenAI-compatible model server that records the messages of every chat completion it is
 * asked for and answers each with the same short streamed reply.
 */
async function startRecordingUpstream(reply) {
  const requests = [];
  const chunk = (delta, finish = null) => `data: ${JSON.stringify({
    id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "recorder",
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
  const server = http.createServer((request, response) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (data) => { body += data; });
    request.on("end", () => {
      requests.push(JSON.parse(body));
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      for (const piece of reply) response.write(chunk({ content: piece }));
      response.write(chunk({}, "stop"));
      response.end("data: [DONE]\n\n");
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, requests, url: `http://127.0.0.1:${server.address().port}` };
}

/** The copilot hook's client: one message on /copilot, its frames up to stream_complete. */
function copilotTurn(addr, user, bearer, frame) {
  return webSocketFrames(`ws://${addr}/copilot?userId=${user}&token=${bearer}`, frame,
                         (received) => ["stream_complete", "error"].includes(received.type));
}

/** What the model was asked, as [role, content] pairs. */
function asked(request) {
  return request.messages.map((message) => [message.role, message.content]);
}

test("a conversation started on /copilot as \"conv-123\" continues on Socket.IO, the model seeing the earlier turn; another user's \"conv-123\" is another conversation",
     async () => {
  const upstream = await startRecordingUpstream(["Noted, ", "thank you."]);
  const inference = new Service("parley-inference", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=openai",
    `--upstream_url=${upstream.url}`, "--upstream_model=recorder",
  ]);
  services.push(inference);
  try {
    const edge = new Service("parley-edge", [
      "--listen=127.0.0.1:0", `--inference=${await inference.listening()}`,
      `--persistence=${persistenceAddr}`, `--jwt_secret_file=${secretFile}`,
      `--jwt_issuer=${kIssuer}`, `--jwt_audience=${kAudience}`, "--suggestions=false",
    ]);
    services.push(edge);
    const addr = await edge.listening();

    const ada = token("ada-cross");
    const frames = await copilotTurn(addr, "ada-cross", ada, {
      action: "message", message: "My name is Ada.", conversationId: "conv-123",
    });
    assert.deepEqual(frames.map((frame) => frame.type),
                     ["acknowledgment", "typing", "stream_start", "stream_token", "stream_token",
                      "stream_complete"]);
    for (const frame of frames.slice(2)) assert.equal(frame.conversationId, "conv-123");
    assert.deepEqual(asked(upstream.requests.at(-1)).at(-1), ["user", "My name is Ada."]);

    const socket = connect(addr, { transports: ["websocket"], auth: { token: ada } });
    const log = new EventLog(socket);
    await connected(socket);
    const { ack, events } = await sendAndComplete(socket, log, "conv-123", "What is my name?");
    const { text } = checkTurn(events, "conv-123", "What is my name?", ack);
    assert.equal(text, "Noted, thank you.");
    // The model was asked with the copilot turn as its context.
    const context = asked(upstream.requests.at(-1)).filter(([role]) => role !== "system");
    assert.deepEqual(context, [["user", "My name is Ada."], ["assistant", "Noted, thank you."],
                               ["user", "What is my name?"]]);
    // One stored conversation holds both turns, whichever dialect sent them.
    const named = await conversationsNamed(addr, "conv-123", ada);
    assert.equal(named.length, 1);
    assert.deepEqual((await storedMessages(addr, named[0].id, ada)).map((m) => m.content),
                     ["My name is Ada.", "Noted, thank you.", "What is my name?",
                      "Noted, thank you."]);

    // Another user's "conv-123" is a conversation of theirs, with none of Ada's context.
    const ben = token("ben-cross");
    const other = connect(addr, { transports: ["websocket"], auth: { token: ben } });
    const otherLog = new EventLog(other);
    await connected(other);
    const theirs = await sendAndComplete(other, otherLog, "conv-123", "Who am I?");
    checkTurn(theirs.events, "conv-123", "Who am I?", theirs.ack);
    assert.deepEqual(asked(upstream.requests.at(-1)).filter(([role]) => role !== "system"),
                     [["user", "Who am I?"]]);
    const bens = await conversationsNamed(addr, "conv-123", ben);
    assert.equal(bens.length, 1);
    assert.notEqual(bens[0].id, named[0].id);
    assert.equal((await storedMessages(addr, named[0].id, ada)).length, 4, "Ada's is unchanged");
    const intrusion = await fetch(`http://${addr}/v1/conversations/${named[0].id}/messages`,
                                  { headers: { Authorization: `Bearer ${ben}` } });
    assert.equal(intrusion.status, 404);
  } finally {
    await new Promise((resolve) => upstream.server.close(resolve));
  }
});

/** Frames of one WebSocket until `last(frame)` holds (or the server closes), as parsed JSON. */
async function webSocketFrames(url, first, last = () => false) {
  const socket = new WebSocket(url);
  const frames = [];
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(
          () => reject(new Error(`${url}: ended without its last frame: ${JSON.stringify(frames)}`)),
          kStepTimeoutMs);
      const done = () => { clearTimeout(timer); resolve(); };
      socket.addEventListener("open", () => { if (first) socket.send(JSON.stringify(first)); });
      socket.addEventListener("message", (message) => {
        const frame = JSON.parse(message.data);
        frames.push(frame);
        if (last(frame)) done();
      });
      socket.addEventListener("close", done);
      socket.addEventListener("error", () => reject(new Error(`${url}: WebSocket error`)));
    });
    return frames;
  } finally {
    socket.close();
  }
}

/** The samples of a Prometheus text exposition: [{name, labels, value}]. */
function parseExposition(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    const labels = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value;
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

test("every dialect's traffic shows on /metrics under its dialect label, and the page passes promtool check metrics",
     async () => {
  const edge = new Service("parley-edge", [
    "--listen=127.0.0.1:0", `--inference=${inferenceAddr}`, `--persistence=${persistenceAddr}`,
    `--jwt_secret_file=${secretFile}`, `--jwt_issuer=${kIssuer}`, `--jwt_audience=${kAudience}`,
    "--suggestions=false",
  ]);
  services.push(edge);
  const addr = await edge.listening();
  const jo = token("jo-metrics");

  // One conversation in each dialect, the way its client holds it.
  const native = await webSocketFrames(`ws://${addr}/ws/chat?token=${jo}`,
      { type: "message", id: "metrics-1", content: "Hello, native." },
      (frame) => frame.type === "stream_complete");
  assert.equal(native.at(-1).type, "stream_complete", JSON.stringify(native));
  const copilot = await webSocketFrames(`ws://${addr}/copilot?userId=jo-metrics&token=${jo}`,
      { action: "message", message: "Hello, copilot." },
      (frame) => frame.type === "stream_complete");
  assert.equal(copilot.at(-1).type, "stream_complete", JSON.stringify(copilot));
  const aiChat = await webSocketFrames(`ws://${addr}/ws/ai-chat?token=${jo}`,
      { type: "chat", message: "Hello, ai-chat." }, (frame) => frame.type === "done");
  assert.equal(aiChat.at(-1).type, "done", JSON.stringify(aiChat));
  const agent = await webSocketFrames(
      `ws://${addr}/ws/agent/stream?question=${encodeURIComponent("Hello, agent?")}&token=${jo}`);
  assert.equal(agent.at(-1).type, "stream_end", JSON.stringify(agent));
  const sse = await fetch(
      `http://${addr}/agent/stream?question=${encodeURIComponent("Hello, SSE?")}&token=${jo}`);
  assert.equal(sse.status, 200);
  assert.match(await sse.text(), /"type":"stream_end"/);
  // Long-polling only: every frame of this turn is carried by polling responses.
  const socket = connect(addr, { transports: ["polling"],
                                 extraHeaders: { Authorization: `Bearer ${jo}` } });
  const log = new EventLog(socket);
  await connected(socket);
  const { events } = await sendAndComplete(socket, log, undefined, "Hello, Socket.IO.");
  checkTurn(events, undefined, "Hello, Socket.IO.");
  socket.close();

  const response = await fetch(`http://${addr}/metrics`);
  assert.equal(response.status, 200);
  const page = await response.text();
  const samples = parseExposition(page);
  const total = (name, labels) => samples
      .filter((sample) => sample.name === name &&
              Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
      .reduce((sum, sample) => sum + sample.value, 0);
  for (const dialect of ["native", "copilot", "ai_chat", "agent", "socketio"]) {
    assert.ok(total("parley_edge_connections_total", { dialect }) >= 1, `${dialect} connections`);
    assert.ok(total("parley_edge_turns_total", { dialect }) >= 1, `${dialect} turns`);
    assert.ok(total("parley_edge_frames_sent_total", { dialect }) >= 1, `${dialect} frames sent`);
    assert.ok(total("parley_edge_tokens_total", { dialect }) >= 1, `${dialect} tokens`);
    assert.ok(total("parley_edge_time_to_first_token_seconds_count", { dialect }) >= 1,
              `${dialect} time to first token`);
  }
  for (const dialect of ["native", "copilot", "ai_chat", "socketio"]) {
    assert.ok(total("parley_edge_frames_received_total", { dialect }) >= 1,
              `${dialect} frames received`);
  }
  // The agent's WebSocket and its SSE twin are one dialect.
  assert.equal(total("parley_edge_connections_total", { dialect: "agent" }), 2);
  // Each of the reply's chat:streaming events went out in a polling response, and was counted.
  const streamed = events.filter((event) => event.name === "chat:streaming").length;
  assert.ok(total("parley_edge_frames_sent_total", { dialect: "socketio" }) >= streamed,
            page.split("\n").filter((line) => line.includes('dialect="socketio"')).join("\n"));
  // Every series of the edge carries one of the five values, nothing else.
  for (const sample of samples.filter((sample) => "dialect" in sample.labels)) {
    assert.ok(["native", "copilot", "ai_chat", "agent", "socketio", "http"]
                  .includes(sample.labels.dialect), `${sample.name}: ${sample.labels.dialect}`);
  }

  // promtool comes with Debian's prometheus package (scripts/install-deps --with-tests).
  const promtool = spawnSync("promtool", ["check", "metrics"], { input: page, encoding: "utf8" });
  assert.equal(promtool.error, undefined, `promtool: ${promtool.error}`);
  assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);
});
