/** The protocol's error codes (docs/protocol.md, "Error codes" and the HTTP API's errors). */
export type ProtocolErrorCode = "invalid_json" | "invalid_frame" | "unknown_type" | "not_found" | "inference_unavailable" | "storage_unavailable" | "shutting_down" | "internal" | "rate_limited" | "too_many_turns" | "deadline_exceeded" | "unauthenticated" | "invalid_request" | "origin_not_allowed" | "method_not_allowed";
/** Codes this library adds for what happens on the client's side. */
export type ClientErrorCode = 
/** The reply text received does not hash to the server's `sha256`. */
"checksum_mismatch"
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
export declare class ParleyError extends Error {
    readonly code: ErrorCode;
    /** The client id (`id`) of the frame the error concerns, when there is one. */
    readonly id?: string;
    /** With `rate_limited`: when the same frame may be sent again. */
    readonly retryAfterMs?: number;
    /** For HTTP API errors: the response status. */
    readonly status?: number;
    constructor(code: ErrorCode, message: string, details?: {
        id?: string;
        retryAfterMs?: number;
        status?: number;
    });
}
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
/** The parts of the WebSocket API the client uses (browsers, React Native, `ws`). */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    onclose: ((event: {
        code?: number;
        reason?: string;
    }) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/** What a token provider may answer: the token, or the token with its expiry. */
export type TokenAnswer = string | {
    token: string;
    expiresAt?: number;
};
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
export interface ParleyEvents {
    /** The connection state changed. */
    state: ConnectionState;
    /** A connection is open; `reconnected` after a drop. */
    open: {
        reconnected: boolean;
    };
    /** A turn's user message is stored. */
    ack: Turn;
    /** A reply began (a turn of this client, or another device's in a joined conversation). */
    replyStart: Reply;
    /** New text of a reply. */
    replyText: {
        reply: Reply;
        delta: string;
        seq: number;
    };
    /** New reasoning of a reply. */
    replyReasoning: {
        reply: Reply;
        delta: string;
    };
    /** A reply ended: see its `status`, and `verified` when the server sent a checksum. */
    replyEnd: Reply;
    /** A turn failed before or while its reply streamed. */
    turnFailed: Turn;
    /** Another device of the user added a message to a joined conversation. */
    messageAdded: {
        conversationId: string;
        message: StoredMessage;
    };
    /** Another device of the user is typing in a joined conversation. */
    typing: {
        conversationId: string;
        isTyping: boolean;
    };
    joined: {
        conversationId: string;
    };
    left: {
        conversationId: string;
    };
    /** Every error: error frames, failed attempts, checksum mismatches. */
    error: ParleyError;
    /** Every frame from the server, parsed, before the client acts on it. */
    frame: ServerFrame;
}
type Listener<T> = (value: T) => void;
/**
 * The delay before reconnect attempt `attempt` (0 for the first after a drop): `baseDelayMs`
 * doubled per attempt (1, 2, 4, 8, 16 s), capped at `maxDelayMs` (30 s), moved by up to
 * ±`jitter` at random so many clients dropped at once do not return at once.
 */
export declare function backoffDelay(attempt: number, options?: ReconnectOptions, random?: () => number): number;
/** The UTF-8 bytes of a string (a lone surrogate becomes U+FFFD, as TextEncoder does). */
export declare function utf8Bytes(text: string): Uint8Array;
/** Lowercase hex SHA-256 (FIPS 180-4) of the text's UTF-8 bytes. */
export declare function sha256Hex(text: string): string;
/** A random client id (UUID v4 when `crypto.randomUUID` exists). */
export declare function newClientId(): string;
/** The `exp` claim of a JWT in milliseconds, or undefined when it has none or is not a JWT. */
export declare function tokenExpiry(token: string): number | undefined;
/**
 * One user's connection to a Parley edge. Create it once per app (or page), keep it for the
 * app's life, and `close()` it at the end. Everything sent while offline waits in a queue and
 * goes out, with the same ids, as soon as a connection is open again.
 */
export declare class ParleyClient {
    private readonly options;
    private readonly clock;
    private readonly random;
    private readonly WebSocketImpl;
    private readonly listeners;
    private socket;
    private stateValue;
    private everOpened;
    private closedByUser;
    private reconnectTimer;
    private refreshTimer;
    private keepAliveTimer;
    /** Whether a `ping` went out since the last frame from the server. */
    private pinged;
    private token;
    private tokenExpiresAt;
    private tokenStale;
    /** Turns not yet answered by `stream_start` (resent on every new connection), in order. */
    private readonly turns;
    /** Acknowledged turns of this connection waiting for their `stream_start`, oldest first. */
    private awaitingStart;
    /** Replies still streaming, by assistant message id. */
    private readonly streaming;
    /** Requests waiting for their answer, oldest first; sent again after a reconnect. */
    private requests;
    /** Conversations this client views (`join`), joined again after a reconnect. */
    private readonly rooms;
    /** Rooms the server has joined on this connection (or is joining). */
    private readonly roomsSent;
    constructor(options: ParleyClientOptions);
    /** Calls `listener` on each `event`; returns a function that stops it. */
    on<K extends keyof ParleyEvents>(event: K, listener: Listener<ParleyEvents[K]>): () => void;
    off<K extends keyof ParleyEvents>(event: K, listener: Listener<ParleyEvents[K]>): void;
    private emit;
    get state(): ConnectionState;
    get isConnected(): boolean;
    /** Opens the connection (again, after `close()`). */
    connect(): void;
    /** Closes the connection for good (code 1000): queued turns fail with `closed`. */
    close(): void;
    private setState;
    private queuedCount;
    private clearTimer;
    private currentToken;
    /** Asks the token provider for a new token now (one call at a time). */
    refreshToken(): Promise<void>;
    private refreshing;
    private callProvider;
    /** Gets the next token ahead of expiry, so a reconnect never offers an expired one. */
    private scheduleRefresh;
    private attempt;
    /** (Re)starts the silence timer of an open socket: ping, then give up on it. */
    private armKeepAlive;
    private detach;
    private attemptFailed;
    private dropped;
    private scheduleAttempt;
    /** Reconnects now instead of waiting for the next attempt's time. */
    reconnectNow(): void;
    private opened;
    private transmit;
    private receive;
    private onAck;
    private onStreamStart;
    private onStreamToken;
    private onStreamReasoning;
    private onStreamEnd;
    private finishReply;
    private readonly turnsByReply;
    private resolveTurnOf;
    private onResumed;
    private onError;
    /**
     * Sends a user message (queued while offline). Continue a conversation with `conversationId`;
     * `deadlineMs` bounds the reply (it then ends `interrupted` with `deadline_exceeded`).
     */
    send(content: string, options?: {
        conversationId?: string;
        parentId?: string;
        model?: string;
        id?: string;
        deadlineMs?: number;
    }): Turn;
    /** Asks for another reply to the user message that `messageId` (a reply or that message) answers. */
    regenerate(messageId: string, options?: {
        model?: string;
        id?: string;
        conversationId?: string;
    }): Turn;
    /** Stores `content` as a new version of user message `messageId` and answers it. */
    edit(messageId: string, content: string, options?: {
        model?: string;
        id?: string;
        conversationId?: string;
    }): Turn;
    private startTurn;
    private transmitTurn;
    private failTurn;
    /** Stops a reply this client started (ignored by the server for anyone else's). */
    cancel(messageId: string): void;
    /** Tells the user's other devices viewing the conversation; dropped while offline. */
    typing(conversationId: string, isTyping?: boolean): boolean;
    /** A reply still streaming, by its assistant message id. */
    reply(messageId: string): Reply | undefined;
    /** Every reply still streaming. */
    replies(): Reply[];
    /**
     * Follows a reply known from stored messages (status `streaming`, e.g. after a page reload) to
     * its end: `text` and `lastSeq` are what is already shown (the stored prefix and its `lastSeq`,
     * or "" and 0 to receive the whole reply).
     */
    resume(message: {
        id: string;
        conversationId: string;
        text?: string;
        lastSeq?: number;
        model?: string;
    }): Reply;
    private sendResume;
    private request;
    private answer;
    /** One page of the user's conversations, newest first. */
    listConversations(options?: {
        pageSize?: number;
        pageToken?: string;
    }): Promise<{
        conversations: ConversationSummary[];
        nextPageToken: string;
    }>;
    /** The conversation's newest 200 messages, oldest first. */
    history(conversationId: string): Promise<StoredMessage[]>;
    /** One page of a conversation's messages (every branch, or the one ending at `leafMessageId`). */
    listMessages(conversationId: string, options?: {
        pageSize?: number;
        pageToken?: string;
        leafMessageId?: string;
    }): Promise<{
        messages: StoredMessage[];
        nextPageToken: string;
    }>;
    /** Every message of a conversation (or of one branch), all pages. */
    allMessages(conversationId: string, options?: {
        leafMessageId?: string;
    }): Promise<StoredMessage[]>;
    /**
     * Views a conversation live (the user's other devices' typing, messages and replies), again
     * after every reconnect. Resolves when joined.
     */
    join(conversationId: string): Promise<void>;
    /** Stops viewing a conversation. */
    leave(conversationId: string): void;
    /**
     * A viewer is also sent the live tokens of replies in the room, and a merged frame from the
     * room cannot be split against a resume's: join only once no resume runs in the conversation.
     */
    private maybeJoin;
    private httpUrl;
    private http;
    /** Renames a conversation (HTTP `PATCH /v1/conversations/{id}`). */
    renameConversation(conversationId: string, title: string): Promise<ConversationSummary>;
    /** Deletes a conversation and its messages (HTTP `DELETE /v1/conversations/{id}`). */
    deleteConversation(conversationId: string): Promise<void>;
}
export {};
