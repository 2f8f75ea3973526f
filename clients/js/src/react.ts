// useParleyChat: a React (and React Native) hook over one ParleyClient and one conversation.
// React is a peer dependency; the hook keeps no protocol logic of its own.

import { useCallback, useEffect, useRef, useState } from "react";

import {
  ParleyClient,
  type ConnectionState,
  type ParleyClientOptions,
  type ParleyError,
  type Reply,
  type StoredMessage,
} from "./index.js";

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

function fromStored(m: StoredMessage): ChatMessage {
  const shown: ChatMessage = { id: m.id, role: m.role, content: m.content, status: m.status };
  if (m.verified !== undefined) shown.verified = m.verified;
  return shown;
}

function fromReply(reply: Reply): ChatMessage {
  const shown: ChatMessage = { id: reply.messageId, role: "assistant", content: reply.text, status: reply.status };
  if (reply.verified !== undefined) shown.verified = reply.verified;
  return shown;
}

export function useParleyChat(options: UseParleyChatOptions): UseParleyChat {
  const ownClient = useRef<ParleyClient | null>(null);
  if (!options.client && !ownClient.current) {
    if (!options.connection) throw new Error("useParleyChat needs a client or connection options");
    ownClient.current = new ParleyClient(options.connection);
  }
  const client = options.client ?? (ownClient.current as ParleyClient);

  const [connection, setConnection] = useState<ConnectionState>(client.state);
  const [conversationId, setConversationId] = useState(options.conversationId ?? "");
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [streaming, setStreaming] = useState<Reply | null>(null);
  const [error, setError] = useState<ParleyError | null>(null);
  const conversation = useRef(conversationId);
  conversation.current = conversationId;

  useEffect(() => () => ownClient.current?.close(), []);

  useEffect(() => {
    setConversationId(options.conversationId ?? "");
  }, [options.conversationId]);

  // The stored conversation, and replies still streaming in it followed to their end.
  useEffect(() => {
    if (!conversationId) return;
    let current = true;
    client.allMessages(conversationId).then((stored) => {
      if (!current) return;
      setMessages(stored.map(fromStored));
      for (const m of stored) {
        if (m.role === "assistant" && m.status === "streaming") {
          setStreaming(client.resume({ id: m.id, conversationId, text: m.content, lastSeq: m.lastSeq }));
        }
      }
    }, (e: ParleyError) => current && setError(e));
    return () => {
      current = false;
    };
  }, [client, conversationId]);

  useEffect(() => {
    const here = (reply: Reply) => reply.conversationId === conversation.current;
    const upsert = (reply: Reply) =>
      setMessages((list) => {
        const at = list.findIndex((m) => m.id === reply.messageId);
        if (at < 0) return [...list, fromReply(reply)];
        const next = list.slice();
        next[at] = fromReply(reply);
        return next;
      });
    const stops = [
      client.on("state", setConnection),
      client.on("ack", (turn) => {
        if (!conversation.current) {
          // Before the next render: the reply's frames follow at once.
          conversation.current = turn.conversationId;
          setConversationId(turn.conversationId);
        }
        setMessages((list) => list.map((m) => (m.id === `local:${turn.id}` ? { ...m, id: turn.userMessageId, status: "complete" } : m)));
      }),
      client.on("replyStart", (reply) => {
        if (!here(reply) && !reply.own) return;
        setStreaming({ ...reply });
        upsert(reply);
      }),
      client.on("replyText", ({ reply }) => {
        if (!here(reply)) return;
        setStreaming({ ...reply });
        upsert(reply);
      }),
      client.on("replyEnd", (reply) => {
        if (!here(reply)) return;
        setStreaming((s) => (s && s.messageId === reply.messageId ? null : s));
        upsert(reply);
        if (reply.error) setError(reply.error);
      }),
      client.on("turnFailed", (turn) => {
        setMessages((list) => list.map((m) => (m.id === `local:${turn.id}` ? { ...m, status: "error" } : m)));
        if (turn.error) setError(turn.error);
      }),
    ];
    return () => stops.forEach((stop) => stop());
  }, [client]);

  const send = useCallback((content: string) => {
    setError(null);
    const turn = client.send(content, { conversationId: conversation.current || undefined, model: options.model });
    setMessages((list) => [...list, { id: `local:${turn.id}`, role: "user", content, status: "sending" }]);
  }, [client, options.model]);

  const stop = useCallback(() => {
    for (const reply of client.replies()) if (reply.own && reply.conversationId === conversation.current) client.cancel(reply.messageId);
  }, [client]);

  const regenerate = useCallback(() => {
    const last = [...messages].reverse().find((m) => m.role === "assistant" && m.status !== "streaming");
    if (!last) return;
    setError(null);
    setMessages((list) => list.filter((m) => m.id !== last.id));
    client.regenerate(last.id, { model: options.model, conversationId: conversation.current });
  }, [client, messages, options.model]);

  return {
    messages,
    streamingText: streaming ? streaming.text : "",
    isConnected: connection.status === "open",
    isStreaming: streaming !== null,
    connection,
    conversationId,
    error,
    send,
    stop,
    regenerate,
    client,
  };
}
