// The three Parley services on loopback ports, and a TCP relay in front of an edge that the
// tests can cut or refuse, as a flaky network would. Service is the one start-up helper of the
// JavaScript suites: this library's, the chat page's and the Socket.IO dialect's.
//
// Environment: PARLEY_BIN_DIR names the directory of parley-edge, parley-inference and
// parley-persistence.

import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";

// Generous: it only stops a broken run from hanging, on a busy machine.
export const kStartTimeoutMs = 60_000;
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

/**
 * Forwards TCP connections to `target` ("HOST:PORT"). `cut()` drops every open connection
 * at once; while `down`, new connections are closed as soon as they arrive.
 */
export class Relay {
  constructor(target) {
    const [host, port] = target.split(":");
    this.down = false;
    this.pairs = new Set();
    this.server = net.createServer((client) => {
      if (this.down) {
        client.destroy();
        return;
      }
      const upstream = net.connect(Number(port), host);
      const pair = [client, upstream];
      this.pairs.add(pair);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  listen() {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => {
      this.address = `127.0.0.1:${this.server.address().port}`;
      resolve(this.address);
    }));
  }

  cut() {
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  close() {
    this.cut();
    return new Promise((resolve) => this.server.close(resolve));
  }
}

/** A port nothing listens on: connecting to it is refused. */
export async function refusedPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}
