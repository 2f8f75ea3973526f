// End-to-end test of the chat page the edge serves, in a real headless
// Chromium: the three real services on loopback ports, a message typed and
// sent, the reply watched while it streams in, then a reload that must show
// the stored conversation again.
//
// Environment (set by run.sh):
//   PARLEY_BIN_DIR      directory holding parley-edge, parley-inference, parley-persistence
//   PARLEY_BROWSER_OUT  directory for the screenshot (created if missing)
//   PARLEY_CHROMIUM     browser binary (default /usr/bin/chromium)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const binDir = process.env.PARLEY_BIN_DIR;
const outDir = process.env.PARLEY_BROWSER_OUT || process.cwd();
const chromiumPath = process.env.PARLEY_CHROMIUM || "/usr/bin/chromium";

// Generous bounds: they only stop a broken run from hanging, on a busy machine.
const kStartTimeoutMs = 60_000;
const kStepTimeoutMs = 30_000;

// A paced engine so the reply takes about 1.7 s to stream and tokens arrive
// as separate frames the page renders one by one.
const kEngineFlags = [
  "--engine=simulated",
  "--sim_ttft_ms=200",
  "--sim_tokens_per_second=20",
  "--sim_max_tokens=30",
];

const kUserText = "Hello from a real browser! What can you tell me about streaming?";

/** Child processes still running; stopped at the end, and on any exit. */
const children = new Set();

/**
 * A service binary started with a clean environment (no PARLEY_* variables
 * from the caller can change its configuration).
 */
class Service {
  constructor(name, args) {
    this.name = name;
    this.stdout = [];
    this.stderr = "";
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.startsWith("PARLEY_")));
    this.proc = spawn(path.join(binDir, name), args, { env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        children.delete(this.proc);
        resolve({ code, signal });
      });
      this.proc.on("error", (error) => {
        children.delete(this.proc);
        this.stderr += String(error);
        resolve({ code: null, signal: null, error });
      });
    });
    this.proc.stderr.setEncoding("utf8");
    this.proc.stderr.on("data", (chunk) => { this.stderr += chunk; });
    this.lines = readline.createInterface({ input: this.proc.stdout });
    this.lines.on("line", (line) => this.stdout.push(line));
  }

  /** Resolves to "127.0.0.1:PORT" from the first stdout line (the listening line). */
  listening() {
    return new Promise((resolve, reject) => {
      const fail = (why) => reject(new Error(
          `${this.name}: ${why}\nstdout:\n${this.stdout.join("\n")}\nstderr:\n${this.stderr}`));
      const timer = setTimeout(() => fail("no listening line"), kStartTimeoutMs);
      const check = (line) => {
        let entry;
        try { entry = JSON.parse(line); } catch { return fail(`first line is not JSON: ${line}`); }
        clearTimeout(timer);
        if (entry.msg !== "listening" || typeof entry.listen !== "string") {
          return fail(`first line is not the listening line: ${line}`);
        }
        resolve(entry.listen);
      };
      if (this.stdout.length > 0) return check(this.stdout[0]);
      this.lines.once("line", check);
      this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        fail(`exited before listening (code ${code}, signal ${signal})`);
      });
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within a grace period. */
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const killer = setTimeout(() => this.proc.kill("SIGKILL"), 15_000);
    await this.exited;
    clearTimeout(killer);
  }
}

process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

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
  services.push(persistence, inference);
  const [persistenceAddr, inferenceAddr] =
      await Promise.all([persistence.listening(), inference.listening()]);

  const edge = new Service("parley-edge", [
    "--listen=127.0.0.1:0", `--inference=${inferenceAddr}`,
    `--persistence=${persistenceAddr}`, "--allow_anonymous",
  ]);
  services.push(edge);
  edgeUrl = `http://${await edge.listening()}/`;

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
  // Edge first, so it does not see its backends disappear under a live turn.
  for (const service of services.reverse()) await service.stop();
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
});

/** Captures every frame the page's WebSocket(s) receive from now on. */
function captureFrames(page) {
  const log = new FrameLog();
  page.on("websocket", (ws) => {
    ws.on("framereceived", ({ payload }) => {
      if (typeof payload !== "string") return;
      try { log.push(JSON.parse(payload)); } catch { /* the page ignores it too */ }
    });
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

  // Reload: the page asks the edge for the stored conversation.
  frames = captureFrames(page);
  await page.reload();
  await waitConnected(page);
  const history = await frames.waitFor((f) => f.type === "history", "history");
  assert.equal(history.conversationId, ack.conversationId);
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

  fs.mkdirSync(outDir, { recursive: true });
  const screenshot = path.join(outDir, "chat_page.png");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);

  assert.deepEqual(pageErrors, [], "no script errors in the page");
  for (const url of requests) {
    assert.ok(url.startsWith(edgeUrl), `the page loaded only from the edge, not ${url}`);
  }
});
