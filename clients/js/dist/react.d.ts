import { ParleyClient, type ConnectionState, type ParleyClientOptions, type ParleyError } from "./index.js";
/** A message as the hook shows it. */
export interface ChatMessage {
    id: string;
    role: "user" | "assistant" | "system";
    content: string;
    status: "sending" | "complete" | "streaming" | "cancelled" | "interrupted" | "error";
    /** When the server sent a checksum: whether the text matches it. */
    verified?: boolean;
}
export interface UseParleyChatOptions {
    /** A client to share; otherwise the hook makes one from `connection` and closes it on unmount. */
    client?: ParleyClient;
    connection?: ParleyClientOptions;
    /** The conversation to show and continue; omit to start a new one with the first message. */
    conversationId?: string;
    model?: string;
}
export interface UseParleyChat {
    messages: ChatMessage[];
    /** The text of the reply streaming now ("" when none). */
    streamingText: string;
    isConnected: boolean;
    isStreaming: boolean;
    connection: ConnectionState;
    conversationId: string;
    error: ParleyError | null;
    send(content: string): void;
    stop(): void;
    regenerate(): void;
    client: ParleyClient;
}
export declare function useParleyChat(options: UseParleyChatOptions): UseParleyChat;
