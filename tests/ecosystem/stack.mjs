// The three Parley services on loopback ports for a node:test suite, stopped when the process
// exits. Environment: PARLEY_BIN_DIR names the directory of the service binaries.

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** Stops every service this process started, so the test process can exit. */
export function stopAll() {
  for (const child of children) {
    child.stdout.destroy();
    child.kill("SIGKILL");
  }
}

/** Starts `name` with `args` and resolves to the address of its "listening" log line. */
function start(name, args) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("PARLEY_")));
  const child = spawn(path.join(process.env.PARLEY_BIN_DIR, name), args, { env, stdio: ["ignore", "pipe", "inherit"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.once("line", (line) => {
      const entry = JSON.parse(line);
      if (entry.msg === "listening") resolve(entry.listen);
      else reject(new Error(`${name}: first line is ${line}`));
    });
    child.on("exit", (code) => reject(new Error(`${name} exited (${code}) before listening`)));
  });
}

/** Persistence on a fresh SQLite file, the simulated engine and one edge with `edgeFlags`. */
export async function startStack(edgeFlags = [], options = {}) {
  const [edge] = await startReplicas(1, edgeFlags, options);
  return edge;
}

/** The same with `count` edges on the same backends, as replicas behind a load balancer. */
export async function startReplicas(count, edgeFlags = [], { tokensPerSecond = 400 } = {}) {
  if (!process.env.PARLEY_BIN_DIR) throw new Error("PARLEY_BIN_DIR must name the service binaries' directory");
  const dir = mkdtempSync(path.join(os.tmpdir(), "parley-ecosystem-"));
  const [persistence, inference] = await Promise.all([
    start("parley-persistence", ["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", `--store=sqlite:${dir}/parley.db`]),
    start("parley-inference", ["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--engine=simulated",
      "--sim_ttft_ms=1", `--sim_tokens_per_second=${tokensPerSecond}`]),
  ]);
  const edges = await Promise.all(Array.from({ length: count }, () => start("parley-edge", [
    "--listen=127.0.0.1:0", `--inference=${inference}`, `--persistence=${persistence}`, "--allow_anonymous",
    "--max_concurrent_turns=0", ...edgeFlags])));
  return edges.map((edge) => `http://${edge}`);
}

/** The stored messages of a conversation, oldest first (the conversations HTTP API). */
export async function storedMessages(base, user, conversationId) {
  const response = await fetch(`${base}/v1/conversations/${encodeURIComponent(conversationId)}/messages?userId=${user}`);
  if (response.status !== 200) throw new Error(`messages: ${response.status} ${await response.text()}`);
  return (await response.json()).messages;
}
