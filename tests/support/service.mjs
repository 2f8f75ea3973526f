// A Parley service binary started by a node:test suite: its listening address from its first log
// line, SIGTERM to stop it, and SIGKILL for every one still running when the test process exits.
// The one start-up helper of the JavaScript suites (the chat page, the Socket.IO dialect, the
// client library). Environment: PARLEY_BIN_DIR names the directory of the service binaries.

import { spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";

// Generous: it only stops a broken run from hanging, on a busy machine.
export const kStartTimeoutMs = 60_000;

/** Child processes still running; stopped at the end, and on any exit. */
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/**
 * A service binary started with a clean environment (no PARLEY_* variables
 * from the caller can change its configuration).
 */
export class Service {
  constructor(name, args) {
    this.name = name;
    this.stdout = [];
    this.stderr = "";
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.startsWith("PARLEY_")));
    this.proc = spawn(path.join(process.env.PARLEY_BIN_DIR, name), args, { env, stdio: ["ignore", "pipe", "pipe"] });
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
