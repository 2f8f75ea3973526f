// End-to-end tests of the chat page the edge serves, in a real headless
// Chromium against the real services on loopback ports: a reply watched while
// it streams in and shown again after a reload; the conversation list
// (switching, rename, delete); Stop, Regenerate and Edit; a connection cut
// mid-reply and recovered, and a message sent while offline; and a second tab
// of the same user following the conversation live.
//
// Environment (set by run.sh):
//   PARLEY_BIN_DIR      directory holding parley-edge, parley-inference, parley-persistence
//   PARLEY_BROWSER_OUT  directory for the screenshot (created if missing)
//   PARLEY_CHROMIUM     browser binary (default /usr/bin/chromium)

import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { kStartTimeoutMs, Relay, Service } from "../../clients/js/test/stack.mjs";

const binDir = process.env.PARLEY_BIN_DIR;
const outDir = process.env.PARLEY_BROWSER_OUT || process.cwd();
const chromiumPath = process.env.PARLEY_CHROMIUM || "/usr/bin/chromium";

// Generous: it only stops a broken run from hanging, on a busy machine.
const kStepTimeoutMs = 30_000;

// A paced engine so the reply takes about 1.7 s to stream and tokens arrive
// as separate frames the page renders one by one.
const kEngineFlags = [
  "--engine=simulated",
  "--sim_ttft_ms=200",
  "--sim_tokens_per_second=20",
  "--sim_max_tokens=30",
];

// A second stack (inference + edge on the same store) with a model slow
// enough (about 15 s a reply) that Stop and a reload always land while the
// reply is still streaming.
const kSlowEngineFlags = [
  "--engine=simulated",
  "--sim_ttft_ms=200",
  "--sim_tokens_per_second=4",
  "--sim_max_tokens=60",
];

const kUserText = "Hello from a real browser! What can you tell me about streaming?";
// Short enough (under 60 bytes) to be the new conversation's title as is.
const kSecondText = "Tell me a short story about a lighthouse.";
const kEditedText = "Tell me a short story about a harbour instead.";
const kLiveFirstText = "Let us plan a trip to Lisbon.";
const kLiveSecondText = "What should we see on the first day?";
const kStopText = "Write a very long essay, please.";
const kResumeText = "Take your time and tell me everything.";
const kCutText = "Keep talking while the network fails.";
const kOfflineText = "Written while the network was down.";

/** WebSocket frames the page received, in order, with waiting on a predicate. */
class FrameLog {
  constructor() {
    this.frames = [];
    this.waiters = [];
  }

  push(frame) {
    this.frames.push(frame);
    this.waiters = this.waiters.filter(({ predicate, resolve }) => {
      const found = this.frames.find(predicate);
      if (found) resolve(found);
      return !found;
    });
  }

  waitFor(predicate, what) {
    const found = this.frames.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
          `no ${what} frame; received: ${JSON.stringify(this.frames)}`)), kStepTimeoutMs);
      this.waiters.push({ predicate, resolve: (frame) => { clearTimeout(timer); resolve(frame); } });
    });
  }
}

let tempDir;
let services = [];
let context;
let edgeUrl;
let slowEdgeUrl;
let reasoningEdgeUrl;
let upstream;

const kReasoning = "The user greets me; a short greeting back will do.";
const kReasonedAnswer = "Hello there!";

/**
 * A stand-in for an OpenAI-compatible model server that reasons before it answers (vLLM's
 * reasoning_content), so the page's "Thinking" display runs against the real openai engine.
 */
function startReasoningUpstream() {
  const chunk = (delta, finish = null) => `data: ${JSON.stringify({
    id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "reasoner",
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
  const server = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      const half = kReasoning.length / 2;
      response.write(chunk({ role: "assistant", content: "" }));
      response.write(chunk({ reasoning_content: kReasoning.slice(0, half) }));
      response.write(chunk({ reasoning_content: kReasoning.slice(half) }));
      response.write(chunk({ content: kReasonedAnswer }, "stop"));
      response.end("data: [DONE]\n\n");
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

before(async () => {
  assert.ok(binDir, "PARLEY_BIN_DIR must name the directory of the service binaries");
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-browser-"));

  const persistence = new Service("parley-persistence", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
    `--store=sqlite:${path.join(tempDir, "parley.db")}`,
  ]);
  const inference = new Service("parley-inference", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", ...kEngineFlags,
  ]);
  const slowInference = new Service("parley-inference", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", ...kSlowEngineFlags,
  ]);
  upstream = await startReasoningUpstream();
  const reasoningInference = new Service("parley-inference", [
    "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=openai",
    `--upstream_url=http://127.0.0.1:${upstream.address().port}`, "--upstream_model=reasoner",
  ]);
  services.push(persistence, inference, slowInference, reasoningInference);
  const [persistenceAddr, inferenceAddr, slowInferenceAddr, reasoningInferenceAddr] =
      await Promise.all([persistence.listening(), inference.listening(), slowInference.listening(),
                         reasoningInference.listening()]);

  const startEdge = (inferenceAt) => {
    const edge = new Service("parley-edge", [
      "--listen=127.0.0.1:0", `--inference=${inferenceAt}`,
      `--persistence=${persistenceAddr}`, "--allow_anonymous",
    ]);
    services.push(edge);
    return edge.listening();
  };
  // Another origin, so its page has its own localStorage: another user.
  const [edgeAddr, slowEdgeAddr, reasoningEdgeAddr] = await Promise.all(
      [startEdge(inferenceAddr), startEdge(slowInferenceAddr), startEdge(reasoningInferenceAddr)]);
  edgeUrl = `http://${edgeAddr}/`;
  slowEdgeUrl = `http://${slowEdgeAddr}/`;
  reasoningEdgeUrl = `http://${reasoningEdgeAddr}/`;

  // Not being able to start the browser is a failure, never a skip.
  context = await chromium.launchPersistentContext(path.join(tempDir, "chromium-profile"), {
    executablePath: chromiumPath,
    headless: true,
    timeout: 2 * kStartTimeoutMs,  // a cold browser start is slow on a loaded machine
    viewport: { width: 900, height: 640 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // Nothing but loopback resolves, whatever the page or the browser asks for.
      "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ],
  });
  context.setDefaultTimeout(kStepTimeoutMs);
});

after(async () => {
  if (context) await context.close().catch(() => {});
  // Edges first, so they do not see their backends disappear under a live turn.
  for (const service of services.reverse()) await service.stop();
  if (upstream) await new Promise((resolve) => upstream.close(resolve));
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
});

/**
 * Captures every frame the page's WebSocket(s) receive from now on; `log.sent`
 * gets the frames the page sends.
 */
function captureFrames(page) {
  const log = new FrameLog();
  log.sent = new FrameLog();
  const parse = (target) => ({ payload }) => {
    if (typeof payload !== "string") return;
    try { target.push(JSON.parse(payload)); } catch { /* the page ignores it too */ }
  };
  page.on("websocket", (ws) => {
    ws.on("framereceived", parse(log));
    ws.on("framesent", parse(log.sent));
  });
  return log;
}

/** The messages shown in the page, as {role, text, classes}. */
function shownMessages(page) {
  return page.$$eval("#log .msg", (els) => els.map((el) => ({
    role: el.classList.contains("user") ? "user" : el.classList.contains("assistant") ? "assistant" : "?",
    text: el.querySelector(".body")?.textContent ?? "",
    streaming: el.classList.contains("streaming"),
    failed: el.classList.contains("failed"),
  })));
}

/** Like shownMessages, with each message's stored id and cancelled mark. */
function shownMessagesWithIds(page) {
  return page.$$eval("#log .msg", (els) => els.map((el) => ({
    id: el.dataset.id,
    role: el.classList.contains("user") ? "user" : "assistant",
    text: el.querySelector(".body").textContent,
    streaming: el.classList.contains("streaming"),
    cancelled: el.classList.contains("cancelled"),
  })));
}

/** Waits until the page shows `count` messages, the last a finished reply. */
async function waitForReplyShown(page, count) {
  await page.waitForFunction((n) => {
    const els = document.querySelectorAll("#log .msg");
    const last = els[els.length - 1];
    return els.length === n && last.classList.contains("assistant") &&
        !last.classList.contains("streaming") && !last.dataset.id.startsWith("local:");
  }, count);
}

/** A new tab with its frames captured and script errors collected. */
async function openPage(url) {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(String(error)));
  const frames = captureFrames(page);
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  await waitConnected(page);
  return { page, frames };
}

async function sendMessage(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}

/** The conversation the page shows (it keeps it in localStorage). */
function currentConversation(page) {
  return page.evaluate(() => localStorage.getItem("parley.conversationId") || "");
}

/** One request of the HTTP API as the page's user; resolves to {status, body}. */
function callApi(page, method, path) {
  return page.evaluate(async ([method, path]) => {
    const userId = localStorage.getItem("parley.userId");
    const response = await fetch(`${path}?userId=${encodeURIComponent(userId)}`, { method });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }, [method, path]);
}

async function storedMessages(page, conversationId) {
  const { status, body } = await callApi(page, "GET", `/v1/conversations/${conversationId}/messages`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.messages;
}

/** The sidebar's entries, top to bottom: {id, title, current}. */
function listedConversations(page) {
  return page.$$eval("#conversations li[data-id]", (els) => els.map((el) => ({
    id: el.dataset.id,
    title: el.querySelector(".open")?.textContent ?? "",
    current: el.classList.contains("current"),
  })));
}

/** Waits until the sidebar lists `id` at the top, highlighted as the current one. */
async function waitListedFirstAndCurrent(page, id) {
  await page.waitForFunction((id) => {
    const first = document.querySelector("#conversations li[data-id]");
    return first && first.dataset.id === id && first.classList.contains("current") &&
        first.querySelector(".open").getAttribute("aria-current") === "true";
  }, id);
}

async function waitConnected(page) {
  await page.waitForSelector("#status.online");
  assert.equal(await page.isEnabled("#send"), true, "Send is enabled once connected");
}

test("chat page streams a reply and shows the conversation again after a reload", async () => {
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));

  let frames = captureFrames(page);
  const response = await page.goto(edgeUrl);
  assert.equal(response.status(), 200);
  assert.equal(await page.title(), "Parley");
  await waitConnected(page);
  assert.deepEqual(await shownMessages(page), [], "a first visit starts with an empty conversation");

  // Record every change of the assistant's text as the page renders it, with
  // whether the reply was still streaming at that moment. A MutationObserver
  // sees each token frame's DOM update, so nothing depends on polling speed.
  await page.evaluate(() => {
    window.__replyObservations = [];
    const log = document.getElementById("log");
    new MutationObserver(() => {
      const el = log.querySelector(".msg.assistant");
      if (!el) return;
      const text = el.querySelector(".body").textContent;
      const seen = window.__replyObservations;
      const streaming = el.classList.contains("streaming");
      const last = seen[seen.length - 1];
      if (!last || last.text !== text || last.streaming !== streaming) seen.push({ text, streaming });
    }).observe(log, { childList: true, subtree: true, characterData: true, attributes: true });
  });

  await page.fill("#input", kUserText);
  await page.press("#input", "Enter");  // the page sends on Enter

  const ack = await frames.waitFor((f) => f.type === "ack", "ack");
  const start = await frames.waitFor((f) => f.type === "stream_start", "stream_start");
  const complete = await frames.waitFor(
      (f) => f.type === "stream_complete" && f.messageId === start.messageId, "stream_complete");
  assert.equal(start.conversationId, ack.conversationId);
  await page.waitForFunction(() => {
    const el = document.querySelector("#log .msg.assistant");
    return el && !el.classList.contains("streaming");
  });
  assert.equal(await page.inputValue("#input"), "", "the composer is cleared after sending");

  // Tokens as the edge sent them: in order, without gaps.
  const tokens = frames.frames.filter((f) => f.type === "stream_token" && f.messageId === start.messageId);
  assert.ok(tokens.length >= 2, `the reply streamed in ${tokens.length} frame(s)`);
  tokens.forEach((f, i) => assert.equal(f.seq, i + 1));
  assert.equal(complete.lastSeq, tokens.length);
  const streamedText = tokens.map((f) => f.token).join("");
  assert.ok(streamedText.length > 0);

  // The page showed the reply growing while it was still streaming.
  const observations = await page.evaluate(() => window.__replyObservations);
  const whileStreaming = observations.filter((o) => o.streaming && o.text.length > 0);
  assert.ok(whileStreaming.length >= 2,
      `expected the text to grow across at least two observations before completion, saw ${
          JSON.stringify(observations)}`);
  for (let i = 1; i < whileStreaming.length; ++i) {
    const [before, now] = [whileStreaming[i - 1].text, whileStreaming[i].text];
    assert.ok(now.length > before.length && now.startsWith(before),
        `reply text must only grow: ${JSON.stringify(before)} -> ${JSON.stringify(now)}`);
  }
  assert.ok(streamedText.startsWith(whileStreaming[whileStreaming.length - 1].text));
  assert.deepEqual(observations[observations.length - 1], { text: streamedText, streaming: false },
      "the reply ends complete and no longer marked as streaming");

  console.log(`reply: ${tokens.length} token frames (usage ${JSON.stringify(complete.usage)}), ` +
      `shown growing in ${whileStreaming.length} steps`);

  const shown = await shownMessages(page);
  assert.deepEqual(shown, [
    { role: "user", text: kUserText, streaming: false, failed: false },
    { role: "assistant", text: streamedText, streaming: false, failed: false },
  ]);

  // The new conversation appears in the sidebar once stored, as the current one.
  await waitListedFirstAndCurrent(page, ack.conversationId);
  const [listed] = await listedConversations(page);
  assert.ok(listed.title.length > 0 && kUserText.startsWith(listed.title.replace(/…$/, "")),
      `the title is the start of the first message: ${JSON.stringify(listed.title)}`);

  // Reload: the page asks the edge for the stored conversation.
  frames = captureFrames(page);
  await page.reload();
  await waitConnected(page);
  const history = await frames.waitFor(
      (f) => f.type === "messages" && f.conversationId === ack.conversationId, "messages");
  assert.deepEqual(history.messages.map(({ role, content, status }) => ({ role, content, status })), [
    { role: "user", content: kUserText, status: "complete" },
    { role: "assistant", content: streamedText, status: "complete" },
  ], "the stored conversation is the one that was streamed");
  assert.equal(history.messages[0].id, ack.messageId);
  assert.equal(history.messages[1].id, start.messageId);
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 2);
  assert.deepEqual(await shownMessages(page), [
    { role: "user", text: kUserText, streaming: false, failed: false },
    { role: "assistant", text: history.messages[1].content, streaming: false, failed: false },
  ], "after the reload the page shows both stored messages");
  // The stored reply's checksum, checked by the page against the text it shows.
  assert.equal(await page.textContent("#log .msg.assistant .checksum"), "✓ checksum verified");
  assert.equal(await page.locator("#log .msg.user .checksum").count(), 0, "only replies show one");

  // Cross-check with a WebSocket of our own (not the page's code), as the
  // same user: the edge's history frame holds the same conversation.
  const ownHistory = await page.evaluate(async (conversationId) => {
    const userId = localStorage.getItem("parley.userId");
    const ws = new WebSocket(
        `ws://${location.host}/ws/chat?userId=${encodeURIComponent(userId)}`, "parley.v1");
    try {
      return await new Promise((resolve, reject) => {
        ws.onerror = () => reject(new Error("WebSocket error"));
        ws.onclose = (e) => reject(new Error(`WebSocket closed ${e.code}`));
        ws.onopen = () => ws.send(JSON.stringify({ type: "history", conversationId }));
        ws.onmessage = (e) => {
          const frame = JSON.parse(e.data);
          if (frame.type === "history" || frame.type === "error") resolve(frame);
        };
      });
    } finally {
      ws.onclose = null;
      ws.close();
    }
  }, ack.conversationId);
  assert.equal(ownHistory.type, "history", JSON.stringify(ownHistory));
  assert.deepEqual(ownHistory.messages, history.messages);
  await waitListedFirstAndCurrent(page, ack.conversationId);

  fs.mkdirSync(outDir, { recursive: true });
  const screenshot = path.join(outDir, "chat_page.png");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);

  assert.deepEqual(pageErrors, [], "no script errors in the page");
  for (const url of requests) {
    assert.ok(url.startsWith(edgeUrl), `the page loaded only from the edge, not ${url}`);
  }
});

test("the sidebar lists each new conversation and switching shows each one's messages", async () => {
  const { page } = await openPage(edgeUrl);
  const first = await currentConversation(page);
  assert.ok(first, "the first test's conversation is the current one");
  await waitListedFirstAndCurrent(page, first);
  await waitForReplyShown(page, 2);

  await page.click("#new-chat");
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 0);
  assert.equal(await page.$("#conversations li.current"), null, "a new chat is not listed yet");
  await sendMessage(page, kSecondText);
  await waitForReplyShown(page, 2);
  const second = await currentConversation(page);
  assert.ok(second && second !== first, "the first message started another conversation");
  await waitListedFirstAndCurrent(page, second);
  const [top, next] = await listedConversations(page);
  assert.deepEqual(top, { id: second, title: kSecondText, current: true });
  assert.deepEqual([next.id, next.current], [first, false], "newest first");

  // Back and forth: each shows its own messages, and the highlight follows.
  await page.click(`#conversations li[data-id="${first}"] .open`);
  await page.waitForFunction((text) =>
    document.querySelector("#log .msg.user .body")?.textContent === text, kUserText);
  await waitForReplyShown(page, 2);
  assert.equal(await currentConversation(page), first);
  assert.deepEqual((await listedConversations(page)).filter((c) => c.current).map((c) => c.id), [first]);

  await page.click(`#conversations li[data-id="${second}"] .open`);
  await page.waitForFunction((text) =>
    document.querySelector("#log .msg.user .body")?.textContent === text, kSecondText);
  await waitForReplyShown(page, 2);
  assert.deepEqual((await listedConversations(page)).filter((c) => c.current).map((c) => c.id), [second]);

  // Narrow screens: the list hides behind the menu button.
  await page.setViewportSize({ width: 380, height: 700 });
  assert.equal(await page.isVisible("#sidebar-toggle"), true);
  const hidden = () => page.$eval("#sidebar", (el) => el.getBoundingClientRect().right <= 0);
  await page.waitForFunction(() => document.querySelector("#sidebar").getBoundingClientRect().right <= 0);
  await page.click("#sidebar-toggle");
  assert.equal(await page.getAttribute("#sidebar-toggle", "aria-expanded"), "true");
  await page.waitForFunction(() => document.querySelector("#sidebar").getBoundingClientRect().left >= 0);
  await page.click(`#conversations li[data-id="${second}"] .open`);
  await page.waitForFunction(() => document.querySelector("#sidebar").getBoundingClientRect().right <= 0);
  assert.equal(await hidden(), true, "choosing a conversation closes the list");

  assert.deepEqual(page.errors, [], "no script errors in the page");
  await page.close();
});

test("Regenerate replaces the reply in view, Edit answers the new text; the server keeps both", async () => {
  const { page, frames } = await openPage(edgeUrl);
  const conversationId = await currentConversation(page);
  await waitForReplyShown(page, 2);
  const [user, oldReply] = await shownMessagesWithIds(page);

  await page.click('#log .msg.assistant button[aria-label="Regenerate reply"]');
  const start = await frames.waitFor((f) => f.type === "stream_start", "stream_start");
  assert.notEqual(start.messageId, oldReply.id);
  const complete = await frames.waitFor(
      (f) => f.type === "stream_complete" && f.messageId === start.messageId, "stream_complete");
  const text = frames.frames.filter((f) => f.type === "stream_token" && f.messageId === start.messageId)
      .map((f) => f.token).join("");
  await page.waitForFunction((id) =>
    document.querySelector("#log .msg.assistant")?.dataset.id === id &&
        !document.querySelector("#log .msg.assistant").classList.contains("streaming"), start.messageId);
  assert.deepEqual(await shownMessagesWithIds(page), [
    user,
    { id: start.messageId, role: "assistant", text, streaming: false, cancelled: false },
  ], "the new reply replaces the old one in view");
  assert.equal(await page.textContent("#log .msg.assistant .versions"), "2/2");
  assert.ok(complete.lastSeq > 0);

  // The server stores both replies, siblings under the same user message.
  let stored = await storedMessages(page, conversationId);
  assert.deepEqual(stored.filter((m) => m.role === "assistant").map((m) => [m.id, m.parentId, m.status]), [
    [oldReply.id, user.id, "complete"],
    [start.messageId, user.id, "complete"],
  ]);

  // The older reply is one click away.
  await page.click('#log .msg.assistant button[aria-label="Previous version"]');
  await page.waitForFunction((id) =>
    document.querySelector("#log .msg.assistant")?.dataset.id === id, oldReply.id);
  assert.equal(await page.textContent("#log .msg.assistant .body"), oldReply.text);
  assert.equal(await page.textContent("#log .msg.assistant .versions"), "1/2");
  await page.click('#log .msg.assistant button[aria-label="Next version"]');
  await page.waitForFunction((id) =>
    document.querySelector("#log .msg.assistant")?.dataset.id === id, start.messageId);

  // Edit the user message: a new branch, with its own reply, replaces the view.
  await page.click('#log .msg.user button[aria-label="Edit message"]');
  await page.fill('#log .msg.user textarea[aria-label="Edit message"]', kEditedText);
  await page.click('#log .msg.user button:has-text("Save & submit")');
  const ack = await frames.waitFor((f) => f.type === "ack" && f.messageId !== user.id, "ack of the edit");
  const editStart = await frames.waitFor(
      (f) => f.type === "stream_start" && f.messageId !== start.messageId, "stream_start of the edit");
  await frames.waitFor(
      (f) => f.type === "stream_complete" && f.messageId === editStart.messageId, "stream_complete");
  await page.waitForFunction((id) =>
    document.querySelector("#log .msg.assistant")?.dataset.id === id &&
        !document.querySelector("#log .msg.assistant").classList.contains("streaming"), editStart.messageId);
  const shown = await shownMessagesWithIds(page);
  assert.deepEqual(shown.map(({ id, role, text }) => ({ id, role, text: role === "user" ? text : "" })), [
    { id: ack.messageId, role: "user", text: kEditedText },
    { id: editStart.messageId, role: "assistant", text: "" },
  ], "the edited message and its reply replace the old branch");
  assert.equal(await page.textContent("#log .msg.user .versions"), "2/2");

  stored = await storedMessages(page, conversationId);
  assert.deepEqual(stored.filter((m) => m.role === "user").map((m) => [m.id, m.content]), [
    [user.id, user.text],
    [ack.messageId, kEditedText],
  ], "both versions of the message are stored");
  assert.equal(stored.find((m) => m.id === ack.messageId).parentId, "", "an edit of the first message is a second root");

  // Back on the first version, a new message continues that branch, not the newest one.
  await page.click('#log .msg.user button[aria-label="Previous version"]');
  await page.waitForFunction((id) =>
    document.querySelector("#log .msg.user")?.dataset.id === id, user.id);
  const shownReply = (await shownMessagesWithIds(page)).find((m) => m.role === "assistant");
  assert.ok(shownReply, "the first version shows its reply");
  await sendMessage(page, "And after that?");
  const followAck = await frames.waitFor(
      (f) => f.type === "ack" && ![user.id, ack.messageId].includes(f.messageId), "ack of the follow-up");
  const followStart = await frames.waitFor(
      (f) => f.type === "stream_start" && ![start.messageId, editStart.messageId].includes(f.messageId),
      "stream_start of the follow-up");
  await frames.waitFor(
      (f) => f.type === "stream_complete" && f.messageId === followStart.messageId, "stream_complete");
  stored = await storedMessages(page, conversationId);
  assert.equal(stored.find((m) => m.id === followAck.messageId).parentId, shownReply.id,
               "the follow-up continues the branch in view");

  assert.deepEqual(page.errors, [], "no script errors in the page");
  await page.close();
});

test("Stop cancels a streaming reply", async () => {
  const { page, frames } = await openPage(slowEdgeUrl);
  assert.equal(await page.isVisible("#stop"), false, "no Stop while nothing streams");
  await sendMessage(page, kStopText);
  const start = await frames.waitFor((f) => f.type === "stream_start", "stream_start");
  // Stop once some of the reply is shown.
  await page.waitForFunction(() => {
    const el = document.querySelector("#log .msg.assistant.streaming .body");
    return el && el.textContent.length > 0;
  });
  await page.click("#stop");
  const cancelled = await frames.waitFor(
      (f) => f.type === "stream_cancelled" && f.messageId === start.messageId, "stream_cancelled");
  assert.deepEqual(frames.sent.frames.filter((f) => f.type === "cancel"), [
    { type: "cancel", messageId: start.messageId },
  ]);
  await page.waitForFunction(() => document.querySelector("#log .msg.assistant.cancelled"));
  assert.equal(await page.isVisible("#stop"), false, "Stop goes away with the stream");
  const [, reply] = await shownMessagesWithIds(page);
  const text = frames.frames.filter((f) => f.type === "stream_token" && f.messageId === start.messageId &&
      f.seq <= cancelled.lastSeq).map((f) => f.token).join("");
  assert.deepEqual(reply, { id: start.messageId, role: "assistant", text, streaming: false, cancelled: true });
  assert.equal(frames.frames.find((f) => f.type === "stream_complete"), undefined);

  const stored = await storedMessages(page, await currentConversation(page));
  assert.deepEqual(stored.map(({ role, status, content }) => ({ role, status, content })), [
    { role: "user", status: "complete", content: kStopText },
    { role: "assistant", status: "cancelled", content: text },
  ]);
  // After a reload it still reads as stopped, not as a failure.
  await page.reload();
  await waitConnected(page);
  await page.waitForFunction(() => document.querySelector("#log .msg.assistant.cancelled"));
  assert.deepEqual(page.errors, [], "no script errors in the page");
  await page.close();
});

test("a reply still streaming when the page reloads is followed to its end", async () => {
  const { page, frames } = await openPage(slowEdgeUrl);
  await page.click("#new-chat");
  await sendMessage(page, kResumeText);
  await frames.waitFor((f) => f.type === "stream_start", "stream_start");
  await page.waitForFunction(() => {
    const el = document.querySelector("#log .msg.assistant.streaming .body");
    return el && el.textContent.length > 0;
  });
  const before = await page.textContent("#log .msg.assistant .body");

  const after = captureFrames(page);
  await page.reload();
  await waitConnected(page);
  const resumed = await after.waitFor((f) => f.type === "resumed", "resumed");
  assert.equal(resumed.recovered, true);
  const complete = await after.waitFor(
      (f) => f.type === "stream_complete" && f.messageId === resumed.messageId, "stream_complete");
  await waitForReplyShown(page, 2);
  const conversationId = await currentConversation(page);
  const stored = await storedMessages(page, conversationId);
  assert.deepEqual(stored.map(({ role, status }) => ({ role, status })), [
    { role: "user", status: "complete" },
    { role: "assistant", status: "complete" },
  ]);
  const shown = await shownMessagesWithIds(page);
  assert.deepEqual(shown.map(({ id, text }) => ({ id, text })),
      stored.map(({ id, content }) => ({ id, text: content })), "the page shows the whole stored reply");
  assert.ok(shown[1].text.startsWith(before), "the reply continues what was shown before the reload");
  assert.equal(complete.lastSeq, stored[1].lastSeq);
  // Joined only once the resumed reply ended: a viewer would get its tokens twice.
  const joined = await after.waitFor((f) => f.type === "joined", "joined");
  assert.ok(after.frames.indexOf(joined) > after.frames.indexOf(complete));
  assert.deepEqual(page.errors, [], "no script errors in the page");
  await page.close();
});

test("a connection cut mid-reply shows when it retries, then the whole reply exactly once", async () => {
  // The page reaches the edge through a relay the test can cut, like a dropped network. Its
  // origin differs from the other tests' pages, so it is a user of its own.
  const relay = new Relay(new URL(slowEdgeUrl).host);
  await relay.listen();
  try {
    const { page, frames } = await openPage(`http://${relay.address}/`);
    assert.equal(await page.isVisible("#banner"), false, "no banner while connected");
    await sendMessage(page, kCutText);
    const start = await frames.waitFor((f) => f.type === "stream_start", "stream_start");
    await page.waitForFunction(() => {
      const el = document.querySelector("#log .msg.assistant.streaming .body");
      return el && el.textContent.length > 0;
    });

    relay.down = true;
    relay.cut();
    await page.waitForSelector("#status.offline");
    await page.waitForSelector("#banner:not([hidden])");
    assert.match(await page.textContent("#banner-text"),
        /^Connection lost\. Next attempt at \d\d:\d\d:\d\d \(in \d+ s\)\./);
    fs.mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: path.join(outDir, "chat_page_reconnecting.png") });
    const beforeCut = frames.frames.filter((f) => f.type === "stream_token" && f.messageId === start.messageId);
    const lastSeqBeforeCut = beforeCut[beforeCut.length - 1].seq;

    relay.down = false;
    await waitConnected(page);
    const complete = await frames.waitFor(
        (f) => f.type === "stream_complete" && f.messageId === start.messageId, "stream_complete");
    await waitForReplyShown(page, 2);
    assert.equal(await page.isVisible("#banner"), false, "the banner goes once connected");

    // Resumed once, from the last seq the page had; nothing sent twice.
    assert.deepEqual(frames.sent.frames.filter((f) => f.type === "resume"),
        [{ type: "resume", messageId: start.messageId, lastSeq: lastSeqBeforeCut }]);
    assert.equal(frames.sent.frames.filter((f) => f.type === "message").length, 1);

    const stored = await storedMessages(page, await currentConversation(page));
    assert.deepEqual(stored.map(({ role, status }) => ({ role, status })), [
      { role: "user", status: "complete" },
      { role: "assistant", status: "complete" },
    ]);
    const shown = await shownMessagesWithIds(page);
    assert.deepEqual(shown.map(({ id, text }) => ({ id, text })),
        stored.map(({ id, content }) => ({ id, text: content })), "the whole stored reply, once");
    assert.ok(complete.lastSeq > lastSeqBeforeCut, "part of the reply came after the cut");
    assert.equal(complete.sha256, stored[1].sha256);
    const checksum = `#log .msg.assistant[data-id="${start.messageId}"] .checksum`;
    assert.equal(await page.textContent(checksum), "✓ checksum verified");
    assert.equal(await page.getAttribute(checksum, "title"), `sha256 ${stored[1].sha256}`);
    assert.deepEqual(page.errors, [], "no script errors in the page");
    await page.close();
  } finally {
    await relay.close();
  }
});

test("a message sent while offline waits, said so in the banner, and goes out once on reconnect", async () => {
  const relay = new Relay(new URL(edgeUrl).host);
  await relay.listen();
  try {
    const { page, frames } = await openPage(`http://${relay.address}/`);
    relay.down = true;
    relay.cut();
    await page.waitForSelector("#status.offline");
    await sendMessage(page, kOfflineText);
    await page.waitForFunction(() => /1 message waits to be sent\./.test(document.getElementById("banner-text").textContent));
    assert.deepEqual((await shownMessages(page)).map(({ role, text }) => ({ role, text })),
        [{ role: "user", text: kOfflineText }], "shown at once");
    assert.equal(frames.sent.frames.filter((f) => f.type === "message").length, 0, "nothing sent offline");

    relay.down = false;
    await waitConnected(page);
    const complete = await frames.waitFor((f) => f.type === "stream_complete", "stream_complete");
    await waitForReplyShown(page, 2);
    const sent = frames.sent.frames.filter((f) => f.type === "message");
    assert.deepEqual(sent.map(({ content }) => content), [kOfflineText], "sent once");
    const stored = await storedMessages(page, await currentConversation(page));
    assert.deepEqual(stored.map(({ role, content }) => ({ role, content: role === "user" ? content : "" })),
        [{ role: "user", content: kOfflineText }, { role: "assistant", content: "" }]);
    assert.equal(stored[1].id, complete.messageId);
    assert.deepEqual((await shownMessagesWithIds(page)).map(({ id, text }) => ({ id, text })),
        stored.map(({ id, content }) => ({ id, text: content })));
    assert.equal(await page.isVisible("#banner"), false);
    assert.deepEqual(page.errors, [], "no script errors in the page");
    await page.close();
  } finally {
    await relay.close();
  }
});

test("a second tab of the same user shows the first tab's typing, message and reply live", async () => {
  const { page: first, frames: firstFrames } = await openPage(edgeUrl);
  await first.click("#new-chat");
  await sendMessage(first, kLiveFirstText);
  await waitForReplyShown(first, 2);
  const conversationId = await currentConversation(first);
  await firstFrames.waitFor((f) => f.type === "joined" && f.conversationId === conversationId, "joined");

  // Same browser profile: the same user, and the same current conversation.
  const { page: second, frames: secondFrames } = await openPage(edgeUrl);
  await secondFrames.waitFor((f) => f.type === "joined" && f.conversationId === conversationId, "joined");
  await waitForReplyShown(second, 2);

  await first.fill("#input", "What should");
  await second.waitForFunction(() => document.getElementById("typing").textContent.length > 0);
  const typing = await secondFrames.waitFor((f) => f.type === "typing", "typing");
  assert.deepEqual(typing, { type: "typing", conversationId, isTyping: true });

  const framesBefore = firstFrames.frames.length;
  await sendMessage(first, kLiveSecondText);
  const start = await firstFrames.waitFor(
      (f) => f.type === "stream_start" && firstFrames.frames.indexOf(f) >= framesBefore, "stream_start");
  await waitForReplyShown(first, 4);
  const firstView = await shownMessagesWithIds(first);
  assert.equal(firstView[3].id, start.messageId);

  // The second tab was told, not reloaded: message_added, then the reply's stream.
  const added = await secondFrames.waitFor((f) => f.type === "message_added", "message_added");
  assert.equal(added.message.content, kLiveSecondText);
  await secondFrames.waitFor(
      (f) => f.type === "stream_start" && f.messageId === start.messageId, "relayed stream_start");
  await secondFrames.waitFor(
      (f) => f.type === "stream_complete" && f.messageId === start.messageId, "relayed stream_complete");
  assert.ok(secondFrames.frames.some((f) => f.type === "stream_token" && f.messageId === start.messageId));
  assert.equal(secondFrames.frames.filter((f) => f.type === "messages").length, 1,
      "the second tab loaded the conversation once");
  await waitForReplyShown(second, 4);
  assert.deepEqual(await shownMessagesWithIds(second), firstView, "both tabs show the same conversation");
  await second.waitForFunction(() => document.getElementById("typing").textContent === "");
  assert.ok(secondFrames.frames.some((f) => f.type === "typing" && f.isTyping === false),
      "sending tells the other tab the user stopped typing");

  assert.deepEqual(first.errors, [], "no script errors in the first tab");
  assert.deepEqual(second.errors, [], "no script errors in the second tab");
  await second.close();
  await first.close();
});

test("rename and delete from the sidebar, with failures shown", async () => {
  const { page } = await openPage(edgeUrl);
  await page.waitForFunction(() => document.querySelectorAll("#conversations li[data-id]").length >= 3);
  const listed = await listedConversations(page);
  const current = await currentConversation(page);
  const [toRename, toDelete] = listed.filter((c) => c.id !== current).map((c) => c.id);

  const kNewTitle = "Renamed from the sidebar";
  await page.click(`#conversations li[data-id="${toRename}"] button[aria-label^="Rename"]`);
  await page.fill(`#conversations li[data-id="${toRename}"] input[aria-label="New title"]`, kNewTitle);
  await page.press(`#conversations li[data-id="${toRename}"] input`, "Enter");
  await page.waitForFunction(([id, title]) =>
    document.querySelector(`#conversations li[data-id="${id}"] .open`)?.textContent === title,
  [toRename, kNewTitle]);

  await page.click(`#conversations li[data-id="${toDelete}"] button[aria-label^="Delete"]`);
  await page.click(`#conversations li[data-id="${toDelete}"] button[aria-label="Confirm delete"]`);
  await page.waitForFunction((id) => !document.querySelector(`#conversations li[data-id="${id}"]`), toDelete);
  assert.equal((await callApi(page, "GET", `/v1/conversations/${toDelete}`)).status, 404);

  // After a reload, the list comes from the server: renamed, and without the deleted one.
  await page.reload();
  await waitConnected(page);
  await page.waitForFunction(([id, title]) =>
    document.querySelector(`#conversations li[data-id="${id}"] .open`)?.textContent === title,
  [toRename, kNewTitle]);
  assert.equal((await listedConversations(page)).some((c) => c.id === toDelete), false);

  // Deleting the conversation on screen empties the view.
  await page.click(`#conversations li[data-id="${current}"] button[aria-label^="Delete"]`);
  await page.click(`#conversations li[data-id="${current}"] button[aria-label="Confirm delete"]`);
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 0);
  assert.equal(await currentConversation(page), "");

  // A conversation deleted elsewhere (another device) cannot be renamed: said so, visibly.
  assert.equal((await callApi(page, "DELETE", `/v1/conversations/${toRename}`)).status, 204);
  await page.click(`#conversations li[data-id="${toRename}"] button[aria-label^="Rename"]`);
  await page.fill(`#conversations li[data-id="${toRename}"] input[aria-label="New title"]`, "Too late");
  await page.press(`#conversations li[data-id="${toRename}"] input`, "Enter");
  await page.waitForSelector("#sidebar-error:not([hidden])");
  assert.match(await page.textContent("#sidebar-error"), /Could not rename: .*\(404\)/);

  assert.deepEqual(page.errors, [], "no script errors in the page");
  await page.close();
});

test("the model's reasoning shows as Thinking while it answers, and only the answer is kept", async () => {
  const { page, frames } = await openPage(reasoningEdgeUrl);
  await sendMessage(page, "Hi!");
  const complete = await frames.waitFor((f) => f.type === "stream_complete", "stream_complete");
  await page.waitForFunction((id) => {
    const reply = document.querySelector(`#log .msg.assistant[data-id="${id}"]`);
    return reply && !reply.classList.contains("streaming");
  }, complete.messageId);
  const reply = `#log .msg.assistant[data-id="${complete.messageId}"]`;
  assert.equal(await page.textContent(`${reply} details.reasoning summary`), "Thinking");
  assert.equal(await page.textContent(`${reply} details.reasoning div`), kReasoning);
  assert.equal(await page.textContent(`${reply} .body`), kReasonedAnswer);

  // Reasoning is not stored: after a reload the reply is the answer alone.
  await page.reload();
  await page.waitForSelector(`${reply} .body`);
  assert.equal(await page.textContent(`${reply} .body`), kReasonedAnswer);
  assert.equal(await page.locator(`${reply} details.reasoning`).count(), 0);
  assert.deepEqual(page.errors, [], "no script errors in the page");
  await page.close();
});
