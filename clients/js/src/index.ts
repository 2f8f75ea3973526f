// @parley/client: a client of Parley's native chat protocol (docs/protocol.md: `/ws/chat`,
// subprotocol `parley.v1`) for browsers, React Native and Node. It owns the connection (token,
// reconnect with back-off), an offline queue of turns resent with their ids, the replies that
// stream in (resumed from their last `seq` after a drop, checked against the server's `sha256`),
// and the request/answer frames for history and paging. No runtime dependencies: this one file
// is the whole library, so a page can load it as a single ES module.

// ---------------------------------------------------------------------------------------------
// Errors

/** The protocol's error codes (docs/protocol.md, "Error codes" and the HTTP API's errors). */
export type ProtocolErrorCode =
  | "invalid_json"
  | "invalid_frame"
  | "unknown_type"
  | "not_found"
  | "inference_unavailable"
  | "storage_unavailable"
  | "shutting_down"
  | "internal"
  | "rate_limited"
  | "too_many_turns"
  | "deadline_exceeded"
  | "unauthenticated"
  | "invalid_request"
  | "origin_not_allowed"
  | "method_not_allowed";

/** Codes this library adds for what happens on the client's side. */
export type ClientErrorCode =
  /** The reply text received does not hash to the server's `sha256`. */
  | "checksum_mismatch"
  /** A connection attempt failed, or every attempt allowed did. */
  | "connection_failed"
  /** The client was closed with work still waiting. */
  | "closed"
  /** `resume` found no such reply (`recovered:false`): reload the conversation. */
  | "not_recovered"
  /** An HTTP answer that is not the API's JSON error. */
  | "http_error";

export type ErrorCode = ProtocolErrorCode | ClientErrorCode;

/** Every error the client reports: `code` is stable, switch on it; `message` is for people. */
export class ParleyError extends Error {
  readonly code: ErrorCode;
  /** The client id (`id`) of the frame the error concerns, when there is one. */
  readonly id?: string;
  /** With `rate_limited`: when the same frame may be sent again. */
  readonly retryAfterMs?: number;
  /** For HTTP API errors: the response status. */
  readonly status?: number;

  constructor(
    code: ErrorCode,
    message: string,
    details: { id?: string; retryAfterMs?: number; status?: number } = {},
  ) {
    super(message);
    this.name = "ParleyError";
    this.code = code;
    if (details.id !== undefined) this.id = details.id;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
    if (details.status !== undefined) this.status = details.status;
  }
}

// ---------------------------------------------------------------------------------------------
// Data the server sends

export type Role = "user" | "assistant" | "system";
export type MessageStatus = "complete" | "streaming" | "cancelled" | "interrupted" | "error";

/** A stored message, as `history`, `messages` and the HTTP API list it. */
export interface StoredMessage {
  id: string;
  parentId: string;
  role: Role;
  content: string;
  status: MessageStatus;
  model: string;
  finishReason: string;
  lastSeq: number;
  createdAt: string;
  /** Lowercase hex SHA-256 of `content`'s UTF-8 bytes, when the server sends it. */
  sha256?: string;
  /** Set by this library when `sha256` was sent: whether `content` matches it. */
  verified?: boolean;
}

export interface ConversationSummary {
  id: string;
  title: string;
  createdAt: string;
  updatedAt: string;
}

export interface Usage {
  promptTokens?: number;
  completionTokens?: number;
  [key: string]: unknown;
}

/** One frame from the server: its `type` and whatever fields it carries. */
export interface ServerFrame {
  type: string;
  [field: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Replies and turns

export type ReplyStatus = "streaming" | "complete" | "cancelled" | "interrupted" | "error";

/** An assistant reply as the client has it: the text so far and, once it ended, how. */
export interface Reply {
  /** The assistant message id (from `stream_start`). */
  readonly messageId: string;
  readonly conversationId: string;
  /** The client id of the turn that asked for it; "" for a reply another device started. */
  readonly clientId: string;
  /** Whether this client's own turn started it (only those can be cancelled from here). */
  readonly own: boolean;
  model: string;
  /** The reply text: every `stream_token` once, in `seq` order. */
  text: string;
  /** The model's reasoning (`stream_reasoning`), not part of the stored reply. */
  reasoning: string;
  /** The last `seq` received: what `resume` continues from. */
  lastSeq: number;
  status: ReplyStatus;
  finishReason?: string;
  usage?: Usage;
  /** How an interrupted or failed reply failed. */
  error?: ParleyError;
  /** The server's checksum of the stored reply, when it sent one. */
  sha256?: string;
  /** With `sha256`: whether `text` matches it. */
  verified?: boolean;
}

export type TurnKind = "message" | "regenerate" | "edit";
export type TurnStatus = "queued" | "sent" | "acked" | "streaming" | "done" | "failed";

/** One `message`, `regenerate` or `edit` and what became of it. */
export interface Turn {
  /** The frame's client id: the idempotency key, the same on every resend. */
  readonly id: string;
  readonly kind: TurnKind;
  status: TurnStatus;
  /** Known once acknowledged (or given when sending). */
  conversationId: string;
  /** The stored user message this turn answers (from `ack`). */
  userMessageId: string;
  reply?: Reply;
  error?: ParleyError;
  /** Resolves once the reply ended or the turn failed. Never rejects. */
  readonly finished: Promise<Turn>;
}

// ---------------------------------------------------------------------------------------------
// Connection state

export type ConnectionStatus = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ConnectionState {
  status: ConnectionStatus;
  /** Failed attempts since the last open connection. */
  failedAttempts: number;
  /** While `reconnecting`: when the next attempt starts (the clock's milliseconds). */
  nextAttemptAt?: number;
  /** While `reconnecting`: the delay before it, in milliseconds. */
  nextAttemptInMs?: number;
  /** Why the last connection ended or the last attempt failed. */
  lastError?: ParleyError;
  /** Turns waiting for a connection to be sent (or sent again). */
  queued: number;
}

// ---------------------------------------------------------------------------------------------
// Options

/** The parts of the WebSocket API the client uses (browsers, React Native, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** What a token provider may answer: the token, or the token with its expiry. */
export type TokenAnswer = string | { token: string; expiresAt?: number };
export type TokenProvider = () => TokenAnswer | Promise<TokenAnswer>;

/** Timers and time, injectable so tests can drive back-off without waiting. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ReconnectOptions {
  /** Attempts after a drop (or after the first attempt failed) before giving up. Default: no limit. */
  maxAttempts?: number;
  /** First delay; each further failed attempt doubles it. Default 1000 ms. */
  baseDelayMs?: number;
  /** Largest delay. Default 30000 ms. */
  maxDelayMs?: number;
  /** Each delay is moved at random by up to this fraction either way. Default 0.2. */
  jitter?: number;
}

export interface ParleyClientOptions {
  /** The WebSocket URL, e.g. `wss://chat.example.com/ws/chat` (may carry `?userId=` in development mode). */
  url: string;
  /** A JWT, or a function that returns one (called again before it expires and after a refused handshake). */
  token?: string | TokenProvider;
  /** The WebSocket implementation; defaults to the global one. Node 20 and older: pass `ws`. */
  WebSocket?: WebSocketConstructor;
  /** `fetch` for the HTTP API (rename, delete); defaults to the global one. */
  fetch?: typeof fetch;
  /** The HTTP API's base URL; defaults to the WebSocket URL's origin over http(s). */
  httpUrl?: string;
  reconnect?: ReconnectOptions;
  /** Get a new token this long before the current one expires. Default 60000 ms. */
  refreshBeforeExpiryMs?: number;
  /**
   * After this long without a frame from the server the client sends `ping`, and when another
   * as long passes in silence it takes the connection for dead and reconnects (a phone that
   * changed networks often gets no close at all). Default 25000 ms; 0 turns it off.
   */
  keepAliveMs?: number;
  /** Open the connection in the constructor. Default true; otherwise call `connect()`. */
  autoConnect?: boolean;
  clock?: Clock;
  /** Random numbers in [0, 1) for the jitter. */
  random?: () => number;
}

// ---------------------------------------------------------------------------------------------
// Events

export interface ParleyEvents {
  /** The connection state changed. */
  state: ConnectionState;
  /** A connection is open; `reconnected` after a drop. */
  open: { reconnected: boolean };
  /** A turn's user message is stored. */
  ack: Turn;
  /** A reply began (a turn of this client, or another device's in a joined conversation). */
  replyStart: Reply;
  /** New text of a reply. */
  replyText: { reply: Reply; delta: string; seq: number };
  /** New reasoning of a reply. */
  replyReasoning: { reply: Reply; delta: string };
  /** A reply ended: see its `status`, and `verified` when the server sent a checksum. */
  replyEnd: Reply;
  /** A turn failed before or while its reply streamed. */
  turnFailed: Turn;
  /** Another device of the user added a message to a joined conversation. */
  messageAdded: { conversationId: string; message: StoredMessage };
  /** Another device of the user is typing in a joined conversation. */
  typing: { conversationId: string; isTyping: boolean };
  joined: { conversationId: string };
  left: { conversationId: string };
  /** Every error: error frames, failed attempts, checksum mismatches. */
  error: ParleyError;
  /** Every frame from the server, parsed, before the client acts on it. */
  frame: ServerFrame;
}

type Listener<T> = (value: T) => void;

// ---------------------------------------------------------------------------------------------
// Back-off

/**
 * The delay before reconnect attempt `attempt` (0 for the first after a drop): `baseDelayMs`
 * doubled per attempt (1, 2, 4, 8, 16 s), capped at `maxDelayMs` (30 s), moved by up to
 * ±`jitter` at random so many clients dropped at once do not return at once.
 */
export function backoffDelay(attempt: number, options: ReconnectOptions = {}, random = Math.random): number {
  const base = options.baseDelayMs ?? 1000;
  const cap = options.maxDelayMs ?? 30000;
  const jitter = options.jitter ?? 0.2;
  const nominal = Math.min(cap, base * Math.pow(2, Math.min(attempt, 30)));
  const moved = nominal * (1 + jitter * (2 * random() - 1));
  return Math.max(0, Math.round(Math.min(cap, moved)));
}

// ---------------------------------------------------------------------------------------------
// SHA-256 (the checksum the server sends: lowercase hex of the UTF-8 bytes). Synchronous and
// self-contained, since React Native and insecure browser contexts have no `crypto.subtle`.

/** The UTF-8 bytes of a string (a lone surrogate becomes U+FFFD, as TextEncoder does). */
export function utf8Bytes(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; ++i) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
        ++i;
      } else {
        c = 0xfffd;
      }
    } else if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd;
    }
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    } else if (c < 0x10000) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    } else {
      out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
  }
  return Uint8Array.from(out);
}

const kSha256Rounds = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** Lowercase hex SHA-256 (FIPS 180-4) of the text's UTF-8 bytes. */
export function sha256Hex(text: string): string {
  const data = utf8Bytes(text);
  const bitLength = data.length * 8;
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < padded.length; block += 64) {
    for (let t = 0; t < 16; ++t) w[t] = view.getUint32(block + 4 * t);
    for (let t = 16; t < 64; ++t) {
      const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
      const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let t = 0; t < 64; ++t) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
        kSha256Rounds[t] + w[t]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      k = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  return Array.from(h, (x) => x.toString(16).padStart(8, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const kOpen = 1;

const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A random client id (UUID v4 when `crypto.randomUUID` exists). */
export function newClientId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  let id = "";
  for (let i = 0; i < 32; ++i) id += Math.floor(Math.random() * 16).toString(16);
  return id;
}

/** The `exp` claim of a JWT in milliseconds, or undefined when it has none or is not a JWT. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = 0;
    let value = 0;
    const bytes: number[] = [];
    for (const ch of payload.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")) {
      const digit = alphabet.indexOf(ch);
      if (digit < 0) return undefined;
      value = (value << 6) | digit;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes.push((value >> bits) & 0xff);
      }
    }
    // Read as Latin-1: only the number in `exp` matters, and it is ASCII.
    let json = "";
    for (const b of bytes) json += String.fromCharCode(b);
    const claims = JSON.parse(json) as { exp?: unknown };
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function asString(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function asNumber(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function errorFromFrame(frame: ServerFrame): ParleyError {
  const details: { id?: string; retryAfterMs?: number } = {};
  if (typeof frame.id === "string" && frame.id) details.id = frame.id;
  if (typeof frame.retryAfterMs === "number") details.retryAfterMs = frame.retryAfterMs;
  return new ParleyError(asString(frame.code) as ErrorCode || "internal", asString(frame.message), details);
}

function storedMessage(raw: unknown): StoredMessage {
  const m = (raw ?? {}) as Record<string, unknown>;
  const message: StoredMessage = {
    id: asString(m.id),
    parentId: asString(m.parentId),
    role: (asString(m.role) || "user") as Role,
    content: asString(m.content),
    status: (asString(m.status) || "complete") as MessageStatus,
    model: asString(m.model),
    finishReason: asString(m.finishReason),
    lastSeq: asNumber(m.lastSeq),
    createdAt: asString(m.createdAt),
  };
  // A reply still streaming has only a prefix stored: nothing to check yet.
  if (typeof m.sha256 === "string" && m.sha256 && message.status !== "streaming") {
    message.sha256 = m.sha256;
    message.verified = sha256Hex(message.content) === m.sha256.toLowerCase();
  }
  return message;
}

function conversationSummary(raw: unknown): ConversationSummary {
  const c = (raw ?? {}) as Record<string, unknown>;
  return {
    id: asString(c.id),
    title: asString(c.title),
    createdAt: asString(c.createdAt),
    updatedAt: asString(c.updatedAt),
  };
}

// ---------------------------------------------------------------------------------------------
// The client

interface TurnState {
  turn: Turn;
  frame: Record<string, unknown>;
  resolve: (turn: Turn) => void;
  retryTimer?: unknown;
}

interface ReplyState {
  reply: Reply;
  /** (seq, text length after it) for each received frame, to cut the text back to a `lastSeq`. */
  marks: Array<[number, number]>;
  /** A `resume` for it is on the way and not yet answered to its end. */
  resuming: boolean;
  /** Its text is complete from seq 1 (false for a reply followed mid-way with an unknown prefix). */
  whole: boolean;
}

type RequestKind = "conversations" | "history" | "messages" | "join";

interface PendingRequest {
  kind: RequestKind;
  conversationId: string;
  frame: Record<string, unknown>;
  resolve: (frame: ServerFrame) => void;
  reject: (error: ParleyError) => void;
}

/**
 * One user's connection to a Parley edge. Create it once per app (or page), keep it for the
 * app's life, and `close()` it at the end. Everything sent while offline waits in a queue and
 * goes out, with the same ids, as soon as a connection is open again.
 */
export class ParleyClient {
  private readonly options: ParleyClientOptions;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly WebSocketImpl: WebSocketConstructor | undefined;
  private readonly listeners = new Map<keyof ParleyEvents, Set<Listener<never>>>();

  private socket: WebSocketLike | null = null;
  private stateValue: ConnectionState = { status: "idle", failedAttempts: 0, queued: 0 };
  private everOpened = false;
  private closedByUser = false;
  private reconnectTimer: unknown = undefined;
  private refreshTimer: unknown = undefined;
  private keepAliveTimer: unknown = undefined;
  /** Whether a `ping` went out since the last frame from the server. */
  private pinged = false;

  private token = "";
  private tokenExpiresAt: number | undefined;
  private tokenStale = true;

  /** Turns not yet answered by `stream_start` (resent on every new connection), in order. */
  private readonly turns = new Map<string, TurnState>();
  /** Acknowledged turns of this connection waiting for their `stream_start`, oldest first. */
  private awaitingStart: TurnState[] = [];
  /** Replies still streaming, by assistant message id. */
  private readonly streaming = new Map<string, ReplyState>();
  /** Requests waiting for their answer, oldest first; sent again after a reconnect. */
  private requests: PendingRequest[] = [];
  /** Conversations this client views (`join`), joined again after a reconnect. */
  private readonly rooms = new Set<string>();
  /** Rooms the server has joined on this connection (or is joining). */
  private readonly roomsSent = new Set<string>();

  constructor(options: ParleyClientOptions) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.WebSocketImpl =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (typeof options.token === "string") {
      this.token = options.token;
      this.tokenExpiresAt = tokenExpiry(options.token);
      this.tokenStale = false;
    }
    if (options.autoConnect !== false) this.connect();
  }

  // ---- Events

  /** Calls `listener` on each `event`; returns a function that stops it. */
  on<K extends keyof ParleyEvents>(event: K, listener: Listener<ParleyEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof ParleyEvents>(event: K, listener: Listener<ParleyEvents[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  private emit<K extends keyof ParleyEvents>(event: K, value: ParleyEvents[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<ParleyEvents[K]>)(value);
      } catch (error) {
        // A listener's bug must not break the protocol state; report it without stopping.
        setTimeout(() => {
          throw error;
        }, 0);
      }
    }
  }

  // ---- Connection

  get state(): ConnectionState {
    return { ...this.stateValue, queued: this.queuedCount() };
  }

  get isConnected(): boolean {
    return this.stateValue.status === "open";
  }

  /** Opens the connection (again, after `close()`). */
  connect(): void {
    this.closedByUser = false;
    if (this.socket || this.reconnectTimer !== undefined) return;
    this.setState({ status: this.everOpened ? "reconnecting" : "connecting", failedAttempts: 0, nextAttemptAt: undefined, nextAttemptInMs: undefined });
    void this.attempt();
  }

  /** Closes the connection for good (code 1000): queued turns fail with `closed`. */
  close(): void {
    this.closedByUser = true;
    this.clearTimer("reconnectTimer");
    this.clearTimer("refreshTimer");
    this.clearTimer("keepAliveTimer");
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      this.detach(socket);
      try {
        socket.close(1000);
      } catch {
        // Already closing.
      }
    }
    const closed = new ParleyError("closed", "the client was closed");
    for (const state of [...this.turns.values()]) this.failTurn(state, closed);
    for (const request of this.requests) request.reject(closed);
    this.requests = [];
    for (const state of this.turnsByReply.values()) {
      state.turn.status = "failed";
      state.turn.error = closed;
      state.resolve(state.turn);
    }
    this.turnsByReply.clear();
    this.setState({ status: "closed", nextAttemptAt: undefined, nextAttemptInMs: undefined });
  }

  private setState(change: Partial<ConnectionState>): void {
    this.stateValue = { ...this.stateValue, ...change, queued: this.queuedCount() };
    if (this.stateValue.nextAttemptAt === undefined) delete this.stateValue.nextAttemptAt;
    if (this.stateValue.nextAttemptInMs === undefined) delete this.stateValue.nextAttemptInMs;
    this.emit("state", this.state);
  }

  private queuedCount(): number {
    let queued = 0;
    for (const state of this.turns.values()) if (state.turn.status === "queued") ++queued;
    return queued;
  }

  private clearTimer(which: "reconnectTimer" | "refreshTimer" | "keepAliveTimer"): void {
    if (this[which] !== undefined) this.clock.clearTimeout(this[which]);
    this[which] = undefined;
  }

  private async currentToken(): Promise<string | undefined> {
    const source = this.options.token;
    if (source === undefined) return undefined;
    if (typeof source === "string") return source;
    const refreshBefore = this.options.refreshBeforeExpiryMs ?? 60000;
    const expiring = this.tokenExpiresAt !== undefined &&
      this.tokenExpiresAt - refreshBefore <= this.clock.now();
    if (this.tokenStale || !this.token || expiring) await this.refreshToken();
    return this.token;
  }

  /** Asks the token provider for a new token now (one call at a time). */
  refreshToken(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.callProvider().finally(() => {
        this.refreshing = undefined;
      });
    }
    return this.refreshing;
  }

  private refreshing: Promise<void> | undefined;

  private async callProvider(): Promise<void> {
    const source = this.options.token;
    if (typeof source !== "function") return;
    const answer = await source();
    const token = typeof answer === "string" ? answer : answer.token;
    const expiresAt = typeof answer === "string" ? undefined : answer.expiresAt;
    this.token = token;
    this.tokenExpiresAt = expiresAt ?? tokenExpiry(token);
    this.tokenStale = false;
    this.scheduleRefresh();
  }

  /** Gets the next token ahead of expiry, so a reconnect never offers an expired one. */
  private scheduleRefresh(): void {
    this.clearTimer("refreshTimer");
    if (this.tokenExpiresAt === undefined || this.closedByUser) return;
    const refreshBefore = this.options.refreshBeforeExpiryMs ?? 60000;
    const delay = Math.max(0, this.tokenExpiresAt - refreshBefore - this.clock.now());
    this.refreshTimer = this.clock.setTimeout(() => {
      this.refreshTimer = undefined;
      this.refreshToken().catch((error) => {
        this.tokenStale = true;
        this.emit("error", new ParleyError("unauthenticated", `the token provider failed: ${String(error)}`));
      });
    }, delay);
  }

  private async attempt(): Promise<void> {
    let token: string | undefined;
    try {
      token = await this.currentToken();
    } catch (error) {
      this.attemptFailed(new ParleyError("unauthenticated", `the token provider failed: ${String(error)}`));
      return;
    }
    if (this.closedByUser) return;
    const Impl = this.WebSocketImpl;
    if (!Impl) {
      this.attemptFailed(new ParleyError("connection_failed",
        "no WebSocket implementation: pass one as the WebSocket option (for example the ws package)"));
      return;
    }
    const protocols = ["parley.v1"];
    if (token) protocols.push(`bearer.${token}`);
    let socket: WebSocketLike;
    try {
      socket = new Impl(this.options.url, protocols);
    } catch (error) {
      this.attemptFailed(new ParleyError("connection_failed", `cannot open ${this.options.url}: ${String(error)}`));
      return;
    }
    this.socket = socket;
    let opened = false;
    // One outcome per socket: some implementations fire only `error` for a refused connection,
    // most fire `error` then `close`.
    let settled = false;
    const settle = (why: ParleyError) => {
      if (settled) return;
      settled = true;
      this.detach(socket);
      if (this.socket === socket) {
        this.socket = null;
        this.clearTimer("keepAliveTimer");
      }
      try {
        socket.close();
      } catch {
        // Never opened or already closed.
      }
      if (this.closedByUser) return;
      if (opened) this.dropped(why);
      else this.attemptFailed(why);
    };
    socket.onopen = () => {
      opened = true;
      this.armKeepAlive(socket, settle);
      this.opened(socket);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.armKeepAlive(socket, settle);
      if (typeof event.data === "string") this.receive(event.data);
    };
    socket.onerror = (event) => {
      const detail = (event as { message?: unknown } | null)?.message;
      settle(new ParleyError("connection_failed",
        typeof detail === "string" && detail ? detail : opened ? "the connection failed" : "the connection was refused"));
    };
    socket.onclose = (event) => {
      const code = event?.code ?? 1006;
      settle(new ParleyError("connection_failed",
        `the connection closed (${code}${event?.reason ? `: ${event.reason}` : ""})`));
    };
  }

  /** (Re)starts the silence timer of an open socket: ping, then give up on it. */
  private armKeepAlive(socket: WebSocketLike, settle: (why: ParleyError) => void): void {
    const interval = this.options.keepAliveMs ?? 25000;
    this.clearTimer("keepAliveTimer");
    this.pinged = false;
    if (interval <= 0) return;
    const silent = () => {
      this.keepAliveTimer = undefined;
      if (this.socket !== socket) return;
      if (this.pinged) {
        settle(new ParleyError("connection_failed", `no answer from the server for ${2 * interval} ms`));
        return;
      }
      this.pinged = this.transmit({ type: "ping" });
      this.keepAliveTimer = this.clock.setTimeout(silent, interval);
    };
    this.keepAliveTimer = this.clock.setTimeout(silent, interval);
  }

  private detach(socket: WebSocketLike): void {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onerror = null;
    socket.onclose = null;
  }

  private attemptFailed(error: ParleyError): void {
    // The edge refuses a bad or expired token with 401, which browsers do not expose: after any
    // refused handshake the provider is asked for a fresh token before the next attempt.
    this.tokenStale = true;
    this.emit("error", error);
    const failedAttempts = this.stateValue.failedAttempts + 1;
    const maxAttempts = this.options.reconnect?.maxAttempts ?? Infinity;
    if (failedAttempts >= maxAttempts) {
      this.setState({ status: "closed", failedAttempts, lastError: error, nextAttemptAt: undefined, nextAttemptInMs: undefined });
      const gaveUp = new ParleyError("connection_failed", `no connection after ${failedAttempts} attempt(s): ${error.message}`);
      for (const state of [...this.turns.values()]) this.failTurn(state, gaveUp);
      for (const request of this.requests) request.reject(gaveUp);
      this.requests = [];
      return;
    }
    this.scheduleAttempt(failedAttempts - 1, { failedAttempts, lastError: error });
  }

  private dropped(error: ParleyError): void {
    // The server forgets this connection's rooms and pending answers: every reply still
    // streaming is resumed, every turn without its reply resent, once a connection is open.
    this.awaitingStart = [];
    this.roomsSent.clear();
    for (const state of this.turns.values()) state.turn.status = "queued";
    for (const state of this.streaming.values()) state.resuming = false;
    this.scheduleAttempt(0, { failedAttempts: 0, lastError: error });
  }

  private scheduleAttempt(attempt: number, change: Partial<ConnectionState>): void {
    const delay = backoffDelay(attempt, this.options.reconnect, this.random);
    const at = this.clock.now() + delay;
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closedByUser) return;
      this.setState({ status: "reconnecting", nextAttemptAt: undefined, nextAttemptInMs: undefined });
      void this.attempt();
    }, delay);
    this.setState({ ...change, status: "reconnecting", nextAttemptAt: at, nextAttemptInMs: delay });
  }

  /** Reconnects now instead of waiting for the next attempt's time. */
  reconnectNow(): void {
    if (this.closedByUser || this.socket) return;
    this.clearTimer("reconnectTimer");
    this.setState({ status: "reconnecting", nextAttemptAt: undefined, nextAttemptInMs: undefined });
    void this.attempt();
  }

  private opened(socket: WebSocketLike): void {
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.setState({ status: "open", failedAttempts: 0, lastError: undefined, nextAttemptAt: undefined, nextAttemptInMs: undefined });
    if (this.socket !== socket) return;
    // Turns first, in the order they were made; the server answers a repeated id with the
    // original ack and reply, so nothing runs twice.
    for (const state of this.turns.values()) this.transmitTurn(state);
    for (const state of this.streaming.values()) this.sendResume(state);
    for (const request of this.requests) if (request.kind !== "join") this.transmit(request.frame);
    for (const conversationId of this.rooms) this.maybeJoin(conversationId);
    this.setState({});  // the queue has gone out
    this.emit("open", { reconnected });
  }

  private transmit(frame: Record<string, unknown>): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== kOpen || this.stateValue.status !== "open") return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  // ---- Incoming frames

  private receive(data: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return;
    this.emit("frame", frame);
    switch (frame.type) {
      case "ack": return this.onAck(frame);
      case "stream_start": return this.onStreamStart(frame);
      case "stream_token": return this.onStreamToken(frame);
      case "stream_reasoning": return this.onStreamReasoning(frame);
      case "stream_complete": return this.onStreamEnd(frame, "complete");
      case "stream_cancelled": return this.onStreamEnd(frame, "cancelled");
      case "stream_interrupted": return this.onStreamEnd(frame, "interrupted");
      case "resumed": return this.onResumed(frame);
      case "history":
        return this.answer(Array.isArray(frame.conversations) ? "conversations" : "history",
          asString(frame.conversationId), frame);
      case "messages": return this.answer("messages", asString(frame.conversationId), frame);
      case "joined":
        this.answer("join", asString(frame.conversationId), frame);
        return this.emit("joined", { conversationId: asString(frame.conversationId) });
      case "left": return this.emit("left", { conversationId: asString(frame.conversationId) });
      case "message_added":
        return this.emit("messageAdded",
          { conversationId: asString(frame.conversationId), message: storedMessage(frame.message) });
      case "typing":
        return this.emit("typing",
          { conversationId: asString(frame.conversationId), isTyping: frame.isTyping !== false });
      case "error": return this.onError(frame);
      default:
        return;  // pong, heartbeat and frames of newer servers
    }
  }

  private onAck(frame: ServerFrame): void {
    const state = this.turns.get(asString(frame.id));
    if (!state || (state.turn.status !== "sent" && state.turn.status !== "queued")) return;
    state.turn.status = "acked";
    state.turn.conversationId = asString(frame.conversationId);
    state.turn.userMessageId = asString(frame.messageId);
    // A resend must name the conversation the first attempt created.
    if (state.turn.kind === "message") state.frame.conversationId = state.turn.conversationId;
    this.awaitingStart.push(state);
    this.emit("ack", state.turn);
  }

  private onStreamStart(frame: ServerFrame): void {
    const messageId = asString(frame.messageId);
    const conversationId = asString(frame.conversationId);
    if (!messageId || this.streaming.has(messageId)) return;
    // The protocol names no turn in stream_start: it answers this connection's oldest
    // acknowledged turn in that conversation, else it is another device's in a joined one.
    const at = this.awaitingStart.findIndex((s) => s.turn.conversationId === conversationId);
    const state = at >= 0 ? this.awaitingStart.splice(at, 1)[0] : undefined;
    const reply: Reply = {
      messageId,
      conversationId,
      clientId: state ? state.turn.id : "",
      own: state !== undefined,
      model: asString(frame.model),
      text: "",
      reasoning: "",
      lastSeq: 0,
      status: "streaming",
    };
    this.streaming.set(messageId, { reply, marks: [], resuming: false, whole: true });
    if (state) {
      state.turn.status = "streaming";
      state.turn.reply = reply;
      // From here on the reply is followed with `resume`, not by sending the turn again.
      this.turns.delete(state.turn.id);
      this.turnsByReply.set(messageId, state);
    }
    this.emit("replyStart", reply);
  }

  private onStreamToken(frame: ServerFrame): void {
    const state = this.streaming.get(asString(frame.messageId));
    const seq = asNumber(frame.seq);
    // A seq already seen is a repeat: its text is in the reply once already.
    if (!state || seq <= state.reply.lastSeq) return;
    const delta = asString(frame.token);
    state.reply.text += delta;
    state.reply.lastSeq = seq;
    state.marks.push([seq, state.reply.text.length]);
    this.emit("replyText", { reply: state.reply, delta, seq });
  }

  private onStreamReasoning(frame: ServerFrame): void {
    const state = this.streaming.get(asString(frame.messageId));
    if (!state) return;
    const delta = asString(frame.text);
    state.reply.reasoning += delta;
    this.emit("replyReasoning", { reply: state.reply, delta });
  }

  private onStreamEnd(frame: ServerFrame, status: ReplyStatus): void {
    const messageId = asString(frame.messageId);
    const state = this.streaming.get(messageId);
    if (!state) return;
    const reply = state.reply;
    const lastSeq = asNumber(frame.lastSeq);
    if (status !== "complete" && lastSeq < reply.lastSeq) {
      // The stored reply ends at lastSeq: drop what streamed past it.
      const mark = [...state.marks].reverse().find(([seq]) => seq <= lastSeq);
      reply.text = reply.text.slice(0, mark ? mark[1] : 0);
      reply.lastSeq = lastSeq;
    }
    reply.status = status;
    if (typeof frame.finishReason === "string") reply.finishReason = frame.finishReason;
    if (frame.usage && typeof frame.usage === "object") reply.usage = frame.usage as Usage;
    if (status === "interrupted") {
      reply.error = new ParleyError(asString(frame.error) as ErrorCode || "inference_unavailable",
        asString(frame.message) || "the model stopped mid-reply");
    }
    if (typeof frame.sha256 === "string" && frame.sha256 && state.whole) {
      reply.sha256 = frame.sha256;
      reply.verified = sha256Hex(reply.text) === frame.sha256.toLowerCase();
      if (!reply.verified) {
        this.emit("error", new ParleyError("checksum_mismatch",
          `reply ${messageId} does not match the server's checksum`));
      }
    }
    this.finishReply(state);
  }

  private finishReply(state: ReplyState): void {
    const reply = state.reply;
    this.streaming.delete(reply.messageId);
    const wasResuming = state.resuming;
    state.resuming = false;
    this.emit("replyEnd", reply);
    this.resolveTurnOf(reply);
    if (wasResuming && this.rooms.has(reply.conversationId)) this.maybeJoin(reply.conversationId);
  }

  private readonly turnsByReply = new Map<string, TurnState>();

  private resolveTurnOf(reply: Reply): void {
    const state = this.turnsByReply.get(reply.messageId);
    if (!state) return;
    this.turnsByReply.delete(reply.messageId);
    state.turn.status = reply.status === "complete" || reply.status === "cancelled" ? "done" : "failed";
    if (reply.error) state.turn.error = reply.error;
    state.resolve(state.turn);
  }

  private onResumed(frame: ServerFrame): void {
    const state = this.streaming.get(asString(frame.messageId));
    if (!state || frame.recovered !== false) return;
    state.reply.status = "error";
    state.reply.error = new ParleyError("not_recovered",
      "the server does not know this reply; reload the conversation");
    this.finishReply(state);
  }

  private onError(frame: ServerFrame): void {
    const error = errorFromFrame(frame);
    const id = error.id;
    if (id) {
      const state = this.turns.get(id) ?? this.awaitingStart.find((s) => s.turn.id === id);
      if (state) {
        this.awaitingStart = this.awaitingStart.filter((s) => s !== state);
        if (error.code === "rate_limited" || error.code === "shutting_down") {
          // Both say: send the same frame again later (after the delay, or on the next
          // connection, which a draining edge is about to close).
          state.turn.status = "queued";
          if (error.code === "rate_limited") {
            state.retryTimer = this.clock.setTimeout(() => {
              state.retryTimer = undefined;
              if (this.turns.has(state.turn.id)) this.transmitTurn(state);
            }, error.retryAfterMs ?? 1000);
          }
          this.emit("error", error);
          return;
        }
        this.failTurn(state, error);
      }
      // A turn whose reply already streams: that reply failed.
      for (const reply of this.streaming.values()) {
        if (reply.reply.clientId === id) {
          reply.reply.status = "error";
          reply.reply.error = error;
          this.finishReply(reply);
        }
      }
    } else if (error.code === "not_found" || error.code === "storage_unavailable") {
      // Errors of reads carry no id: they answer the oldest read still waiting.
      const request = this.requests.shift();
      if (request) {
        if (request.kind === "join") {
          this.rooms.delete(request.conversationId);
          this.roomsSent.delete(request.conversationId);
        }
        request.reject(error);
      }
    }
    this.emit("error", error);
  }

  // ---- Turns

  /**
   * Sends a user message (queued while offline). Continue a conversation with `conversationId`;
   * `deadlineMs` bounds the reply (it then ends `interrupted` with `deadline_exceeded`).
   */
  send(content: string, options: { conversationId?: string; parentId?: string; model?: string; id?: string; deadlineMs?: number } = {}): Turn {
    const frame: Record<string, unknown> = { type: "message", content };
    if (options.conversationId) frame.conversationId = options.conversationId;
    if (options.parentId) frame.parentId = options.parentId;
    if (options.model) frame.model = options.model;
    if (options.deadlineMs) frame.deadlineMs = options.deadlineMs;
    return this.startTurn("message", frame, options.id, options.conversationId ?? "");
  }

  /** Asks for another reply to the user message that `messageId` (a reply or that message) answers. */
  regenerate(messageId: string, options: { model?: string; id?: string; conversationId?: string } = {}): Turn {
    const frame: Record<string, unknown> = { type: "regenerate", messageId };
    if (options.model) frame.model = options.model;
    return this.startTurn("regenerate", frame, options.id, options.conversationId ?? "");
  }

  /** Stores `content` as a new version of user message `messageId` and answers it. */
  edit(messageId: string, content: string, options: { model?: string; id?: string; conversationId?: string } = {}): Turn {
    const frame: Record<string, unknown> = { type: "edit", messageId, content };
    if (options.model) frame.model = options.model;
    return this.startTurn("edit", frame, options.id, options.conversationId ?? "");
  }

  private startTurn(kind: TurnKind, frame: Record<string, unknown>, id: string | undefined, conversationId: string): Turn {
    const turnId = id || newClientId();
    frame.id = turnId;
    let resolve!: (turn: Turn) => void;
    const finished = new Promise<Turn>((r) => (resolve = r));
    const turn: Turn = { id: turnId, kind, status: "queued", conversationId, userMessageId: "", finished };
    const state: TurnState = { turn, frame, resolve };
    this.turns.set(turnId, state);
    this.transmitTurn(state);
    this.setState({});
    return turn;
  }

  private transmitTurn(state: TurnState): void {
    if (state.turn.status !== "queued" || state.retryTimer !== undefined) return;
    if (this.transmit(state.frame)) state.turn.status = "sent";
  }

  private failTurn(state: TurnState, error: ParleyError): void {
    this.turns.delete(state.turn.id);
    this.awaitingStart = this.awaitingStart.filter((s) => s !== state);
    if (state.retryTimer !== undefined) this.clock.clearTimeout(state.retryTimer);
    state.turn.status = "failed";
    state.turn.error = error;
    this.emit("turnFailed", state.turn);
    state.resolve(state.turn);
    this.setState({});
  }

  /** Stops a reply this client started (ignored by the server for anyone else's). */
  cancel(messageId: string): void {
    this.transmit({ type: "cancel", messageId });
  }

  /** Tells the user's other devices viewing the conversation; dropped while offline. */
  typing(conversationId: string, isTyping = true): boolean {
    if (!this.roomsSent.has(conversationId)) return false;
    return this.transmit({ type: "typing", conversationId, isTyping });
  }

  // ---- Replies

  /** A reply still streaming, by its assistant message id. */
  reply(messageId: string): Reply | undefined {
    return this.streaming.get(messageId)?.reply;
  }

  /** Every reply still streaming. */
  replies(): Reply[] {
    return [...this.streaming.values()].map((s) => s.reply);
  }

  /**
   * Follows a reply known from stored messages (status `streaming`, e.g. after a page reload) to
   * its end: `text` and `lastSeq` are what is already shown (the stored prefix and its `lastSeq`,
   * or "" and 0 to receive the whole reply).
   */
  resume(message: { id: string; conversationId: string; text?: string; lastSeq?: number; model?: string }): Reply {
    const known = this.streaming.get(message.id);
    if (known) return known.reply;
    const reply: Reply = {
      messageId: message.id,
      conversationId: message.conversationId,
      clientId: "",
      own: false,
      model: message.model ?? "",
      text: message.text ?? "",
      reasoning: "",
      lastSeq: message.lastSeq ?? 0,
      status: "streaming",
    };
    const state: ReplyState = { reply, marks: [[reply.lastSeq, reply.text.length]], resuming: false, whole: true };
    this.streaming.set(message.id, state);
    if (this.stateValue.status === "open") this.sendResume(state);
    return reply;
  }

  private sendResume(state: ReplyState): void {
    if (this.transmit({ type: "resume", messageId: state.reply.messageId, lastSeq: state.reply.lastSeq })) {
      state.resuming = true;
    }
  }

  // ---- Reads

  private request(kind: RequestKind, conversationId: string, frame: Record<string, unknown>): Promise<ServerFrame> {
    return new Promise<ServerFrame>((resolve, reject) => {
      if (this.stateValue.status === "closed") {
        reject(new ParleyError("closed", "the client is closed"));
        return;
      }
      this.requests.push({ kind, conversationId, frame, resolve, reject });
      if (kind === "join") this.maybeJoin(conversationId);
      else this.transmit(frame);
    });
  }

  private answer(kind: RequestKind, conversationId: string, frame: ServerFrame): void {
    const at = this.requests.findIndex((r) => r.kind === kind && r.conversationId === conversationId);
    if (at < 0) return;
    const [request] = this.requests.splice(at, 1);
    request.resolve(frame);
  }

  /** One page of the user's conversations, newest first. */
  async listConversations(options: { pageSize?: number; pageToken?: string } = {}):
    Promise<{ conversations: ConversationSummary[]; nextPageToken: string }> {
    const frame: Record<string, unknown> = { type: "history" };
    if (options.pageSize) frame.pageSize = options.pageSize;
    if (options.pageToken) frame.pageToken = options.pageToken;
    const answer = await this.request("conversations", "", frame);
    return {
      conversations: (answer.conversations as unknown[]).map(conversationSummary),
      nextPageToken: asString(answer.nextPageToken),
    };
  }

  /** The conversation's newest 200 messages, oldest first. */
  async history(conversationId: string): Promise<StoredMessage[]> {
    const answer = await this.request("history", conversationId, { type: "history", conversationId });
    return Array.isArray(answer.messages) ? answer.messages.map(storedMessage) : [];
  }

  /** One page of a conversation's messages (every branch, or the one ending at `leafMessageId`). */
  async listMessages(conversationId: string, options: { pageSize?: number; pageToken?: string; leafMessageId?: string } = {}):
    Promise<{ messages: StoredMessage[]; nextPageToken: string }> {
    const frame: Record<string, unknown> = { type: "messages", conversationId };
    if (options.pageSize) frame.pageSize = options.pageSize;
    if (options.pageToken) frame.pageToken = options.pageToken;
    if (options.leafMessageId) frame.leafMessageId = options.leafMessageId;
    const answer = await this.request("messages", conversationId, frame);
    return {
      messages: Array.isArray(answer.messages) ? answer.messages.map(storedMessage) : [],
      nextPageToken: asString(answer.nextPageToken),
    };
  }

  /** Every message of a conversation (or of one branch), all pages. */
  async allMessages(conversationId: string, options: { leafMessageId?: string } = {}): Promise<StoredMessage[]> {
    const all: StoredMessage[] = [];
    let pageToken = "";
    do {
      const page = await this.listMessages(conversationId, { pageSize: 1000, pageToken, leafMessageId: options.leafMessageId });
      all.push(...page.messages);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return all;
  }

  /**
   * Views a conversation live (the user's other devices' typing, messages and replies), again
   * after every reconnect. Resolves when joined.
   */
  join(conversationId: string): Promise<void> {
    this.rooms.add(conversationId);
    return this.request("join", conversationId, { type: "join", conversationId }).then(() => undefined);
  }

  /** Stops viewing a conversation. */
  leave(conversationId: string): void {
    this.rooms.delete(conversationId);
    const waiting = this.requests.filter((r) => r.kind === "join" && r.conversationId === conversationId);
    this.requests = this.requests.filter((r) => !waiting.includes(r));
    for (const request of waiting) request.resolve({ type: "left", conversationId });
    if (this.roomsSent.delete(conversationId)) this.transmit({ type: "leave", conversationId });
  }

  /**
   * A viewer is also sent the live tokens of replies in the room, and a merged frame from the
   * room cannot be split against a resume's: join only once no resume runs in the conversation.
   */
  private maybeJoin(conversationId: string): void {
    if (!this.rooms.has(conversationId) || this.roomsSent.has(conversationId)) return;
    for (const state of this.streaming.values()) {
      if (state.resuming && state.reply.conversationId === conversationId) return;
    }
    if (this.transmit({ type: "join", conversationId })) this.roomsSent.add(conversationId);
  }

  // ---- HTTP API

  // Plain string work, not URL: React Native's URL implements little of the standard.
  private httpUrl(path: string): string {
    let origin: string;
    if (this.options.httpUrl) {
      origin = this.options.httpUrl.replace(/\/+$/, "");
    } else {
      const match = /^(wss?):\/\/([^/?#]+)/i.exec(this.options.url);
      if (!match) throw new ParleyError("http_error", `cannot tell the HTTP API's address from ${this.options.url}`);
      origin = `${match[1].toLowerCase() === "wss" ? "https" : "http"}://${match[2]}`;
    }
    // Development mode names the user in the query, on the socket and the API alike.
    const userId = /[?&]userId=([^&#]*)/.exec(this.options.url);
    return origin + path + (userId ? `?userId=${userId[1]}` : "");
  }

  private async http(method: string, path: string, body?: unknown): Promise<unknown> {
    const doFetch = this.options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (!doFetch) throw new ParleyError("http_error", "no fetch implementation: pass one as the fetch option");
    const url = this.httpUrl(path);
    for (let attempt = 0; ; ++attempt) {
      const token = await this.currentToken();
      const headers: Record<string, string> = {};
      if (token) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response: Response;
      try {
        response = await doFetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (error) {
        throw new ParleyError("http_error", `cannot reach ${url}: ${String(error)}`);
      }
      if (response.status === 401 && attempt === 0 && typeof this.options.token === "function") {
        this.tokenStale = true;
        continue;
      }
      const text = await response.text();
      let json: unknown = undefined;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        // Not JSON: reported below by status.
      }
      if (!response.ok) {
        const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
        throw new ParleyError((error?.code as ErrorCode) || "http_error",
          error?.message || `HTTP ${response.status}`, { status: response.status });
      }
      return json;
    }
  }

  /** Renames a conversation (HTTP `PATCH /v1/conversations/{id}`). */
  async renameConversation(conversationId: string, title: string): Promise<ConversationSummary> {
    return conversationSummary(await this.http("PATCH", `/v1/conversations/${encodeURIComponent(conversationId)}`, { title }));
  }

  /** Deletes a conversation and its messages (HTTP `DELETE /v1/conversations/{id}`). */
  async deleteConversation(conversationId: string): Promise<void> {
    await this.http("DELETE", `/v1/conversations/${encodeURIComponent(conversationId)}`);
    this.rooms.delete(conversationId);
    this.roomsSent.delete(conversationId);
  }
}
