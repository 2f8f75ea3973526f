// @parley/client: a client of Parley's native chat protocol (docs/protocol.md: `/ws/chat`,
// subprotocol `parley.v1`) for browsers, React Native and Node. It owns the connection (token,
// reconnect with back-off), an offline queue of turns resent with their ids, the replies that
// stream in (resumed from their last `seq` after a drop, checked against the server's `sha256`),
// and the request/answer frames for history and paging. No runtime dependencies: this one file
// is the whole library, so a page can load it as a single ES module.
/** Every error the client reports: `code` is stable, switch on it; `message` is for people. */
export class ParleyError extends Error {
    constructor(code, message, details = {}) {
        super(message);
        this.name = "ParleyError";
        this.code = code;
        if (details.id !== undefined)
            this.id = details.id;
        if (details.retryAfterMs !== undefined)
            this.retryAfterMs = details.retryAfterMs;
        if (details.status !== undefined)
            this.status = details.status;
    }
}
// ---------------------------------------------------------------------------------------------
// Back-off
/**
 * The delay before reconnect attempt `attempt` (0 for the first after a drop): `baseDelayMs`
 * doubled per attempt (1, 2, 4, 8, 16 s), capped at `maxDelayMs` (30 s), moved by up to
 * ±`jitter` at random so many clients dropped at once do not return at once.
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
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
export function utf8Bytes(text) {
    const out = [];
    for (let i = 0; i < text.length; ++i) {
        let c = text.charCodeAt(i);
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
            const low = text.charCodeAt(i + 1);
            if (low >= 0xdc00 && low <= 0xdfff) {
                c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                ++i;
            }
            else {
                c = 0xfffd;
            }
        }
        else if (c >= 0xd800 && c <= 0xdfff) {
            c = 0xfffd;
        }
        if (c < 0x80) {
            out.push(c);
        }
        else if (c < 0x800) {
            out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        }
        else if (c < 0x10000) {
            out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        }
        else {
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
export function sha256Hex(text) {
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
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let block = 0; block < padded.length; block += 64) {
        for (let t = 0; t < 16; ++t)
            w[t] = view.getUint32(block + 4 * t);
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
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += k;
    }
    return Array.from(h, (x) => x.toString(16).padStart(8, "0")).join("");
}
// ---------------------------------------------------------------------------------------------
// Small helpers
const kOpen = 1;
const systemClock = {
    now: () => Date.now(),
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (handle) => clearTimeout(handle),
};
/** A random client id (UUID v4 when `crypto.randomUUID` exists). */
export function newClientId() {
    const c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function")
        return c.randomUUID();
    let id = "";
    for (let i = 0; i < 32; ++i)
        id += Math.floor(Math.random() * 16).toString(16);
    return id;
}
/** The `exp` claim of a JWT in milliseconds, or undefined when it has none or is not a JWT. */
export function tokenExpiry(token) {
    const payload = token.split(".")[1];
    if (!payload)
        return undefined;
    try {
        const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bits = 0;
        let value = 0;
        const bytes = [];
        for (const ch of payload.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")) {
            const digit = alphabet.indexOf(ch);
            if (digit < 0)
                return undefined;
            value = (value << 6) | digit;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                bytes.push((value >> bits) & 0xff);
            }
        }
        // Read as Latin-1: only the number in `exp` matters, and it is ASCII.
        let json = "";
        for (const b of bytes)
            json += String.fromCharCode(b);
        const claims = JSON.parse(json);
        return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
    }
    catch {
        return undefined;
    }
}
function asString(value) {
    return typeof value === "string" ? value : "";
}
function asNumber(value) {
    return typeof value === "number" && Number.isFinite(value) ? value : 0;
}
function errorFromFrame(frame) {
    const details = {};
    if (typeof frame.id === "string" && frame.id)
        details.id = frame.id;
    if (typeof frame.retryAfterMs === "number")
        details.retryAfterMs = frame.retryAfterMs;
    return new ParleyError(asString(frame.code) || "internal", asString(frame.message), details);
}
function storedMessage(raw) {
    const m = (raw ?? {});
    const message = {
        id: asString(m.id),
        parentId: asString(m.parentId),
        role: (asString(m.role) || "user"),
        content: asString(m.content),
        status: (asString(m.status) || "complete"),
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
function conversationSummary(raw) {
    const c = (raw ?? {});
    return {
        id: asString(c.id),
        title: asString(c.title),
        createdAt: asString(c.createdAt),
        updatedAt: asString(c.updatedAt),
    };
}
/**
 * One user's connection to a Parley edge. Create it once per app (or page), keep it for the
 * app's life, and `close()` it at the end. Everything sent while offline waits in a queue and
 * goes out, with the same ids, as soon as a connection is open again.
 */
export class ParleyClient {
    constructor(options) {
        this.listeners = new Map();
        this.socket = null;
        this.stateValue = { status: "idle", failedAttempts: 0, queued: 0 };
        this.everOpened = false;
        this.closedByUser = false;
        this.reconnectTimer = undefined;
        this.refreshTimer = undefined;
        this.keepAliveTimer = undefined;
        /** Whether a `ping` went out since the last frame from the server. */
        this.pinged = false;
        this.token = "";
        this.tokenStale = true;
        /** Turns not yet answered by `stream_start` (resent on every new connection), in order. */
        this.turns = new Map();
        /** Acknowledged turns of this connection waiting for their `stream_start`, oldest first. */
        this.awaitingStart = [];
        /** Replies still streaming, by assistant message id. */
        this.streaming = new Map();
        /** Requests waiting for their answer, oldest first; sent again after a reconnect. */
        this.requests = [];
        /** Conversations this client views (`join`), joined again after a reconnect. */
        this.rooms = new Set();
        /** Rooms the server has joined on this connection (or is joining). */
        this.roomsSent = new Set();
        this.turnsByReply = new Map();
        this.options = options;
        this.clock = options.clock ?? systemClock;
        this.random = options.random ?? Math.random;
        this.WebSocketImpl =
            options.WebSocket ?? globalThis.WebSocket;
        if (typeof options.token === "string") {
            this.token = options.token;
            this.tokenExpiresAt = tokenExpiry(options.token);
            this.tokenStale = false;
        }
        if (options.autoConnect !== false)
            this.connect();
    }
    // ---- Events
    /** Calls `listener` on each `event`; returns a function that stops it. */
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set)
            this.listeners.set(event, (set = new Set()));
        set.add(listener);
        return () => this.off(event, listener);
    }
    off(event, listener) {
        this.listeners.get(event)?.delete(listener);
    }
    emit(event, value) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        for (const listener of [...set]) {
            try {
                listener(value);
            }
            catch (error) {
                // A listener's bug must not break the protocol state; report it without stopping.
                setTimeout(() => {
                    throw error;
                }, 0);
            }
        }
    }
    // ---- Connection
    get state() {
        return { ...this.stateValue, queued: this.queuedCount() };
    }
    get isConnected() {
        return this.stateValue.status === "open";
    }
    /** Opens the connection (again, after `close()`). */
    connect() {
        this.closedByUser = false;
        if (this.socket || this.reconnectTimer !== undefined)
            return;
        this.setState({ status: this.everOpened ? "reconnecting" : "connecting", failedAttempts: 0, nextAttemptAt: undefined, nextAttemptInMs: undefined });
        void this.attempt();
    }
    /** Closes the connection for good (code 1000): queued turns fail with `closed`. */
    close() {
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
            }
            catch {
                // Already closing.
            }
        }
        const closed = new ParleyError("closed", "the client was closed");
        for (const state of [...this.turns.values()])
            this.failTurn(state, closed);
        for (const request of this.requests)
            request.reject(closed);
        this.requests = [];
        for (const state of this.turnsByReply.values()) {
            state.turn.status = "failed";
            state.turn.error = closed;
            state.resolve(state.turn);
        }
        this.turnsByReply.clear();
        this.setState({ status: "closed", nextAttemptAt: undefined, nextAttemptInMs: undefined });
    }
    setState(change) {
        this.stateValue = { ...this.stateValue, ...change, queued: this.queuedCount() };
        if (this.stateValue.nextAttemptAt === undefined)
            delete this.stateValue.nextAttemptAt;
        if (this.stateValue.nextAttemptInMs === undefined)
            delete this.stateValue.nextAttemptInMs;
        this.emit("state", this.state);
    }
    queuedCount() {
        let queued = 0;
        for (const state of this.turns.values())
            if (state.turn.status === "queued")
                ++queued;
        return queued;
    }
    clearTimer(which) {
        if (this[which] !== undefined)
            this.clock.clearTimeout(this[which]);
        this[which] = undefined;
    }
    async currentToken() {
        const source = this.options.token;
        if (source === undefined)
            return undefined;
        if (typeof source === "string")
            return source;
        const refreshBefore = this.options.refreshBeforeExpiryMs ?? 60000;
        const expiring = this.tokenExpiresAt !== undefined &&
            this.tokenExpiresAt - refreshBefore <= this.clock.now();
        if (this.tokenStale || !this.token || expiring)
            await this.refreshToken();
        return this.token;
    }
    /** Asks the token provider for a new token now (one call at a time). */
    refreshToken() {
        if (!this.refreshing) {
            this.refreshing = this.callProvider().finally(() => {
                this.refreshing = undefined;
            });
        }
        return this.refreshing;
    }
    async callProvider() {
        const source = this.options.token;
        if (typeof source !== "function")
            return;
        const answer = await source();
        const token = typeof answer === "string" ? answer : answer.token;
        const expiresAt = typeof answer === "string" ? undefined : answer.expiresAt;
        this.token = token;
        this.tokenExpiresAt = expiresAt ?? tokenExpiry(token);
        this.tokenStale = false;
        this.scheduleRefresh();
    }
    /** Gets the next token ahead of expiry, so a reconnect never offers an expired one. */
    scheduleRefresh() {
        this.clearTimer("refreshTimer");
        if (this.tokenExpiresAt === undefined || this.closedByUser)
            return;
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
    async attempt() {
        let token;
        try {
            token = await this.currentToken();
        }
        catch (error) {
            this.attemptFailed(new ParleyError("unauthenticated", `the token provider failed: ${String(error)}`));
            return;
        }
        if (this.closedByUser)
            return;
        const Impl = this.WebSocketImpl;
        if (!Impl) {
            this.attemptFailed(new ParleyError("connection_failed", "no WebSocket implementation: pass one as the WebSocket option (for example the ws package)"));
            return;
        }
        const protocols = ["parley.v1"];
        if (token)
            protocols.push(`bearer.${token}`);
        let socket;
        try {
            socket = new Impl(this.options.url, protocols);
        }
        catch (error) {
            this.attemptFailed(new ParleyError("connection_failed", `cannot open ${this.options.url}: ${String(error)}`));
            return;
        }
        this.socket = socket;
        let opened = false;
        // One outcome per socket: some implementations fire only `error` for a refused connection,
        // most fire `error` then `close`.
        let settled = false;
        const settle = (why) => {
            if (settled)
                return;
            settled = true;
            this.detach(socket);
            if (this.socket === socket) {
                this.socket = null;
                this.clearTimer("keepAliveTimer");
            }
            try {
                socket.close();
            }
            catch {
                // Never opened or already closed.
            }
            if (this.closedByUser)
                return;
            if (opened)
                this.dropped(why);
            else
                this.attemptFailed(why);
        };
        socket.onopen = () => {
            opened = true;
            this.armKeepAlive(socket, settle);
            this.opened(socket);
        };
        socket.onmessage = (event) => {
            if (this.socket !== socket)
                return;
            this.armKeepAlive(socket, settle);
            if (typeof event.data === "string")
                this.receive(event.data);
        };
        socket.onerror = (event) => {
            const detail = event?.message;
            settle(new ParleyError("connection_failed", typeof detail === "string" && detail ? detail : opened ? "the connection failed" : "the connection was refused"));
        };
        socket.onclose = (event) => {
            const code = event?.code ?? 1006;
            settle(new ParleyError("connection_failed", `the connection closed (${code}${event?.reason ? `: ${event.reason}` : ""})`));
        };
    }
    /** (Re)starts the silence timer of an open socket: ping, then give up on it. */
    armKeepAlive(socket, settle) {
        const interval = this.options.keepAliveMs ?? 25000;
        this.clearTimer("keepAliveTimer");
        this.pinged = false;
        if (interval <= 0)
            return;
        const silent = () => {
            this.keepAliveTimer = undefined;
            if (this.socket !== socket)
                return;
            if (this.pinged) {
                settle(new ParleyError("connection_failed", `no answer from the server for ${2 * interval} ms`));
                return;
            }
            this.pinged = this.transmit({ type: "ping" });
            this.keepAliveTimer = this.clock.setTimeout(silent, interval);
        };
        this.keepAliveTimer = this.clock.setTimeout(silent, interval);
    }
    detach(socket) {
        socket.onopen = null;
        socket.onmessage = null;
        socket.onerror = null;
        socket.onclose = null;
    }
    attemptFailed(error) {
        // The edge refuses a bad or expired token with 401, which browsers do not expose: after any
        // refused handshake the provider is asked for a fresh token before the next attempt.
        this.tokenStale = true;
        this.emit("error", error);
        const failedAttempts = this.stateValue.failedAttempts + 1;
        const maxAttempts = this.options.reconnect?.maxAttempts ?? Infinity;
        if (failedAttempts >= maxAttempts) {
            this.setState({ status: "closed", failedAttempts, lastError: error, nextAttemptAt: undefined, nextAttemptInMs: undefined });
            const gaveUp = new ParleyError("connection_failed", `no connection after ${failedAttempts} attempt(s): ${error.message}`);
            for (const state of [...this.turns.values()])
                this.failTurn(state, gaveUp);
            for (const request of this.requests)
                request.reject(gaveUp);
            this.requests = [];
            return;
        }
        this.scheduleAttempt(failedAttempts - 1, { failedAttempts, lastError: error });
    }
    dropped(error) {
        // The server forgets this connection's rooms and pending answers: every reply still
        // streaming is resumed, every turn without its reply resent, once a connection is open.
        this.awaitingStart = [];
        this.roomsSent.clear();
        for (const state of this.turns.values())
            state.turn.status = "queued";
        for (const state of this.streaming.values())
            state.resuming = false;
        this.scheduleAttempt(0, { failedAttempts: 0, lastError: error });
    }
    scheduleAttempt(attempt, change) {
        const delay = backoffDelay(attempt, this.options.reconnect, this.random);
        const at = this.clock.now() + delay;
        this.reconnectTimer = this.clock.setTimeout(() => {
            this.reconnectTimer = undefined;
            if (this.closedByUser)
                return;
            this.setState({ status: "reconnecting", nextAttemptAt: undefined, nextAttemptInMs: undefined });
            void this.attempt();
        }, delay);
        this.setState({ ...change, status: "reconnecting", nextAttemptAt: at, nextAttemptInMs: delay });
    }
    /** Reconnects now instead of waiting for the next attempt's time. */
    reconnectNow() {
        if (this.closedByUser || this.socket)
            return;
        this.clearTimer("reconnectTimer");
        this.setState({ status: "reconnecting", nextAttemptAt: undefined, nextAttemptInMs: undefined });
        void this.attempt();
    }
    opened(socket) {
        const reconnected = this.everOpened;
        this.everOpened = true;
        this.setState({ status: "open", failedAttempts: 0, lastError: undefined, nextAttemptAt: undefined, nextAttemptInMs: undefined });
        if (this.socket !== socket)
            return;
        // Turns first, in the order they were made; the server answers a repeated id with the
        // original ack and reply, so nothing runs twice.
        for (const state of this.turns.values())
            this.transmitTurn(state);
        for (const state of this.streaming.values())
            this.sendResume(state);
        for (const request of this.requests)
            if (request.kind !== "join")
                this.transmit(request.frame);
        for (const conversationId of this.rooms)
            this.maybeJoin(conversationId);
        this.setState({}); // the queue has gone out
        this.emit("open", { reconnected });
    }
    transmit(frame) {
        const socket = this.socket;
        if (!socket || socket.readyState !== kOpen || this.stateValue.status !== "open")
            return false;
        socket.send(JSON.stringify(frame));
        return true;
    }
    // ---- Incoming frames
    receive(data) {
        let frame;
        try {
            frame = JSON.parse(data);
        }
        catch {
            return;
        }
        if (!frame || typeof frame !== "object" || typeof frame.type !== "string")
            return;
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
                return this.answer(Array.isArray(frame.conversations) ? "conversations" : "history", asString(frame.conversationId), frame);
            case "messages": return this.answer("messages", asString(frame.conversationId), frame);
            case "joined":
                this.answer("join", asString(frame.conversationId), frame);
                return this.emit("joined", { conversationId: asString(frame.conversationId) });
            case "left": return this.emit("left", { conversationId: asString(frame.conversationId) });
            case "message_added":
                return this.emit("messageAdded", { conversationId: asString(frame.conversationId), message: storedMessage(frame.message) });
            case "typing":
                return this.emit("typing", { conversationId: asString(frame.conversationId), isTyping: frame.isTyping !== false });
            case "error": return this.onError(frame);
            default:
                return; // pong, heartbeat and frames of newer servers
        }
    }
    onAck(frame) {
        const state = this.turns.get(asString(frame.id));
        if (!state || (state.turn.status !== "sent" && state.turn.status !== "queued"))
            return;
        state.turn.status = "acked";
        state.turn.conversationId = asString(frame.conversationId);
        state.turn.userMessageId = asString(frame.messageId);
        // A resend must name the conversation the first attempt created.
        if (state.turn.kind === "message")
            state.frame.conversationId = state.turn.conversationId;
        this.awaitingStart.push(state);
        this.emit("ack", state.turn);
    }
    onStreamStart(frame) {
        const messageId = asString(frame.messageId);
        const conversationId = asString(frame.conversationId);
        if (!messageId || this.streaming.has(messageId))
            return;
        // The protocol names no turn in stream_start: it answers this connection's oldest
        // acknowledged turn in that conversation, else it is another device's in a joined one.
        const at = this.awaitingStart.findIndex((s) => s.turn.conversationId === conversationId);
        const state = at >= 0 ? this.awaitingStart.splice(at, 1)[0] : undefined;
        const reply = {
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
    onStreamToken(frame) {
        const state = this.streaming.get(asString(frame.messageId));
        const seq = asNumber(frame.seq);
        // A seq already seen is a repeat: its text is in the reply once already.
        if (!state || seq <= state.reply.lastSeq)
            return;
        const delta = asString(frame.token);
        state.reply.text += delta;
        state.reply.lastSeq = seq;
        state.marks.push([seq, state.reply.text.length]);
        this.emit("replyText", { reply: state.reply, delta, seq });
    }
    onStreamReasoning(frame) {
        const state = this.streaming.get(asString(frame.messageId));
        if (!state)
            return;
        const delta = asString(frame.text);
        state.reply.reasoning += delta;
        this.emit("replyReasoning", { reply: state.reply, delta });
    }
    onStreamEnd(frame, status) {
        const messageId = asString(frame.messageId);
        const state = this.streaming.get(messageId);
        if (!state)
            return;
        const reply = state.reply;
        const lastSeq = asNumber(frame.lastSeq);
        if (status !== "complete" && lastSeq < reply.lastSeq) {
            // The stored reply ends at lastSeq: drop what streamed past it.
            const mark = [...state.marks].reverse().find(([seq]) => seq <= lastSeq);
            reply.text = reply.text.slice(0, mark ? mark[1] : 0);
            reply.lastSeq = lastSeq;
        }
        reply.status = status;
        if (typeof frame.finishReason === "string")
            reply.finishReason = frame.finishReason;
        if (frame.usage && typeof frame.usage === "object")
            reply.usage = frame.usage;
        if (status === "interrupted") {
            reply.error = new ParleyError(asString(frame.error) || "inference_unavailable", asString(frame.message) || "the model stopped mid-reply");
        }
        if (typeof frame.sha256 === "string" && frame.sha256 && state.whole) {
            reply.sha256 = frame.sha256;
            reply.verified = sha256Hex(reply.text) === frame.sha256.toLowerCase();
            if (!reply.verified) {
                this.emit("error", new ParleyError("checksum_mismatch", `reply ${messageId} does not match the server's checksum`));
            }
        }
        this.finishReply(state);
    }
    finishReply(state) {
        const reply = state.reply;
        this.streaming.delete(reply.messageId);
        const wasResuming = state.resuming;
        state.resuming = false;
        this.emit("replyEnd", reply);
        this.resolveTurnOf(reply);
        if (wasResuming && this.rooms.has(reply.conversationId))
            this.maybeJoin(reply.conversationId);
    }
    resolveTurnOf(reply) {
        const state = this.turnsByReply.get(reply.messageId);
        if (!state)
            return;
        this.turnsByReply.delete(reply.messageId);
        state.turn.status = reply.status === "complete" || reply.status === "cancelled" ? "done" : "failed";
        if (reply.error)
            state.turn.error = reply.error;
        state.resolve(state.turn);
    }
    onResumed(frame) {
        const state = this.streaming.get(asString(frame.messageId));
        if (!state || frame.recovered !== false)
            return;
        state.reply.status = "error";
        state.reply.error = new ParleyError("not_recovered", "the server does not know this reply; reload the conversation");
        this.finishReply(state);
    }
    onError(frame) {
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
                            if (this.turns.has(state.turn.id))
                                this.transmitTurn(state);
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
        }
        else if (error.code === "not_found" || error.code === "storage_unavailable") {
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
    send(content, options = {}) {
        const frame = { type: "message", content };
        if (options.conversationId)
            frame.conversationId = options.conversationId;
        if (options.parentId)
            frame.parentId = options.parentId;
        if (options.model)
            frame.model = options.model;
        if (options.deadlineMs)
            frame.deadlineMs = options.deadlineMs;
        return this.startTurn("message", frame, options.id, options.conversationId ?? "");
    }
    /** Asks for another reply to the user message that `messageId` (a reply or that message) answers. */
    regenerate(messageId, options = {}) {
        const frame = { type: "regenerate", messageId };
        if (options.model)
            frame.model = options.model;
        return this.startTurn("regenerate", frame, options.id, options.conversationId ?? "");
    }
    /** Stores `content` as a new version of user message `messageId` and answers it. */
    edit(messageId, content, options = {}) {
        const frame = { type: "edit", messageId, content };
        if (options.model)
            frame.model = options.model;
        return this.startTurn("edit", frame, options.id, options.conversationId ?? "");
    }
    startTurn(kind, frame, id, conversationId) {
        const turnId = id || newClientId();
        frame.id = turnId;
        let resolve;
        const finished = new Promise((r) => (resolve = r));
        const turn = { id: turnId, kind, status: "queued", conversationId, userMessageId: "", finished };
        const state = { turn, frame, resolve };
        this.turns.set(turnId, state);
        this.transmitTurn(state);
        this.setState({});
        return turn;
    }
    transmitTurn(state) {
        if (state.turn.status !== "queued" || state.retryTimer !== undefined)
            return;
        if (this.transmit(state.frame))
            state.turn.status = "sent";
    }
    failTurn(state, error) {
        this.turns.delete(state.turn.id);
        this.awaitingStart = this.awaitingStart.filter((s) => s !== state);
        if (state.retryTimer !== undefined)
            this.clock.clearTimeout(state.retryTimer);
        state.turn.status = "failed";
        state.turn.error = error;
        this.emit("turnFailed", state.turn);
        state.resolve(state.turn);
        this.setState({});
    }
    /** Stops a reply this client started (ignored by the server for anyone else's). */
    cancel(messageId) {
        this.transmit({ type: "cancel", messageId });
    }
    /** Tells the user's other devices viewing the conversation; dropped while offline. */
    typing(conversationId, isTyping = true) {
        if (!this.roomsSent.has(conversationId))
            return false;
        return this.transmit({ type: "typing", conversationId, isTyping });
    }
    // ---- Replies
    /** A reply still streaming, by its assistant message id. */
    reply(messageId) {
        return this.streaming.get(messageId)?.reply;
    }
    /** Every reply still streaming. */
    replies() {
        return [...this.streaming.values()].map((s) => s.reply);
    }
    /**
     * Follows a reply known from stored messages (status `streaming`, e.g. after a page reload) to
     * its end: `text` and `lastSeq` are what is already shown (the stored prefix and its `lastSeq`,
     * or "" and 0 to receive the whole reply).
     */
    resume(message) {
        const known = this.streaming.get(message.id);
        if (known)
            return known.reply;
        const reply = {
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
        const state = { reply, marks: [[reply.lastSeq, reply.text.length]], resuming: false, whole: true };
        this.streaming.set(message.id, state);
        if (this.stateValue.status === "open")
            this.sendResume(state);
        return reply;
    }
    sendResume(state) {
        if (this.transmit({ type: "resume", messageId: state.reply.messageId, lastSeq: state.reply.lastSeq })) {
            state.resuming = true;
        }
    }
    // ---- Reads
    request(kind, conversationId, frame) {
        return new Promise((resolve, reject) => {
            if (this.stateValue.status === "closed") {
                reject(new ParleyError("closed", "the client is closed"));
                return;
            }
            this.requests.push({ kind, conversationId, frame, resolve, reject });
            if (kind === "join")
                this.maybeJoin(conversationId);
            else
                this.transmit(frame);
        });
    }
    answer(kind, conversationId, frame) {
        const at = this.requests.findIndex((r) => r.kind === kind && r.conversationId === conversationId);
        if (at < 0)
            return;
        const [request] = this.requests.splice(at, 1);
        request.resolve(frame);
    }
    /** One page of the user's conversations, newest first. */
    async listConversations(options = {}) {
        const frame = { type: "history" };
        if (options.pageSize)
            frame.pageSize = options.pageSize;
        if (options.pageToken)
            frame.pageToken = options.pageToken;
        const answer = await this.request("conversations", "", frame);
        return {
            conversations: answer.conversations.map(conversationSummary),
            nextPageToken: asString(answer.nextPageToken),
        };
    }
    /** The conversation's newest 200 messages, oldest first. */
    async history(conversationId) {
        const answer = await this.request("history", conversationId, { type: "history", conversationId });
        return Array.isArray(answer.messages) ? answer.messages.map(storedMessage) : [];
    }
    /** One page of a conversation's messages (every branch, or the one ending at `leafMessageId`). */
    async listMessages(conversationId, options = {}) {
        const frame = { type: "messages", conversationId };
        if (options.pageSize)
            frame.pageSize = options.pageSize;
        if (options.pageToken)
            frame.pageToken = options.pageToken;
        if (options.leafMessageId)
            frame.leafMessageId = options.leafMessageId;
        const answer = await this.request("messages", conversationId, frame);
        return {
            messages: Array.isArray(answer.messages) ? answer.messages.map(storedMessage) : [],
            nextPageToken: asString(answer.nextPageToken),
        };
    }
    /** Every message of a conversation (or of one branch), all pages. */
    async allMessages(conversationId, options = {}) {
        const all = [];
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
    join(conversationId) {
        this.rooms.add(conversationId);
        return this.request("join", conversationId, { type: "join", conversationId }).then(() => undefined);
    }
    /** Stops viewing a conversation. */
    leave(conversationId) {
        this.rooms.delete(conversationId);
        const waiting = this.requests.filter((r) => r.kind === "join" && r.conversationId === conversationId);
        this.requests = this.requests.filter((r) => !waiting.includes(r));
        for (const request of waiting)
            request.resolve({ type: "left", conversationId });
        if (this.roomsSent.delete(conversationId))
            this.transmit({ type: "leave", conversationId });
    }
    /**
     * A viewer is also sent the live tokens of replies in the room, and a merged frame from the
     * room cannot be split against a resume's: join only once no resume runs in the conversation.
     */
    maybeJoin(conversationId) {
        if (!this.rooms.has(conversationId) || this.roomsSent.has(conversationId))
            return;
        for (const state of this.streaming.values()) {
            if (state.resuming && state.reply.conversationId === conversationId)
                return;
        }
        if (this.transmit({ type: "join", conversationId }))
            this.roomsSent.add(conversationId);
    }
    // ---- HTTP API
    // Plain string work, not URL: React Native's URL implements little of the standard.
    httpUrl(path) {
        let origin;
        if (this.options.httpUrl) {
            origin = this.options.httpUrl.replace(/\/+$/, "");
        }
        else {
            const match = /^(wss?):\/\/([^/?#]+)/i.exec(this.options.url);
            if (!match)
                throw new ParleyError("http_error", `cannot tell the HTTP API's address from ${this.options.url}`);
            origin = `${match[1].toLowerCase() === "wss" ? "https" : "http"}://${match[2]}`;
        }
        // Development mode names the user in the query, on the socket and the API alike.
        const userId = /[?&]userId=([^&#]*)/.exec(this.options.url);
        return origin + path + (userId ? `?userId=${userId[1]}` : "");
    }
    async http(method, path, body) {
        const doFetch = this.options.fetch ?? globalThis.fetch;
        if (!doFetch)
            throw new ParleyError("http_error", "no fetch implementation: pass one as the fetch option");
        const url = this.httpUrl(path);
        for (let attempt = 0;; ++attempt) {
            const token = await this.currentToken();
            const headers = {};
            if (token)
                headers.Authorization = `Bearer ${token}`;
            if (body !== undefined)
                headers["Content-Type"] = "application/json";
            let response;
            try {
                response = await doFetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
            }
            catch (error) {
                throw new ParleyError("http_error", `cannot reach ${url}: ${String(error)}`);
            }
            if (response.status === 401 && attempt === 0 && typeof this.options.token === "function") {
                this.tokenStale = true;
                continue;
            }
            const text = await response.text();
            let json = undefined;
            try {
                json = text ? JSON.parse(text) : undefined;
            }
            catch {
                // Not JSON: reported below by status.
            }
            if (!response.ok) {
                const error = json?.error;
                throw new ParleyError(error?.code || "http_error", error?.message || `HTTP ${response.status}`, { status: response.status });
            }
            return json;
        }
    }
    /** Renames a conversation (HTTP `PATCH /v1/conversations/{id}`). */
    async renameConversation(conversationId, title) {
        return conversationSummary(await this.http("PATCH", `/v1/conversations/${encodeURIComponent(conversationId)}`, { title }));
    }
    /** Deletes a conversation and its messages (HTTP `DELETE /v1/conversations/{id}`). */
    async deleteConversation(conversationId) {
        await this.http("DELETE", `/v1/conversations/${encodeURIComponent(conversationId)}`);
        this.rooms.delete(conversationId);
        this.roomsSent.delete(conversationId);
    }
}
