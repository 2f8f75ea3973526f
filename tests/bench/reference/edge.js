'use strict';
// Reference edge for benchmarks: the same job as parley-edge for the native
// `message` frame, written the way the source documents' Node backends are
// (ws + @grpc/grpc-js), against the same parley-inference and
// parley-persistence. One turn: store the user message, ack, load recent
// history, open the assistant message, stream_start, Generate while writing
// every delta to WriteMessageStream, finish, stream_complete once the store
// has acknowledged the finish. Only what the benchmark drives is implemented.
//
//   node edge.js --listen=127.0.0.1:0 --inference=HOST:PORT --persistence=HOST:PORT
//
// First stdout line: {"msg":"listening","listen":"127.0.0.1:PORT",...}.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { WebSocketServer } = require('ws');

function flag(name, fallback) {
  const prefix = `--${name}=`;
  const arg = process.argv.find((a) => a.startsWith(prefix));
  if (arg) return arg.slice(prefix.length);
  const env = process.env[`PARLEY_${name.toUpperCase()}`];
  return env !== undefined ? env : fallback;
}

const listen = flag('listen', '127.0.0.1:0');
const inferenceAddress = flag('inference', '127.0.0.1:9001');
const persistenceAddress = flag('persistence', '127.0.0.1:9002');
const protoDir = flag('proto_dir', path.join(__dirname, '..', '..', '..', 'proto'));
const historyMessages = 20;

const loaderOptions = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir],
};
const inferencePkg = grpc.loadPackageDefinition(
  protoLoader.loadSync('parley/inference/v1/inference_service.proto', loaderOptions));
const persistencePkg = grpc.loadPackageDefinition(
  protoLoader.loadSync('parley/persistence/v1/conversation_service.proto', loaderOptions));
const inference = new inferencePkg.parley.inference.v1.InferenceService(
  inferenceAddress, grpc.credentials.createInsecure());
const persistence = new persistencePkg.parley.persistence.v1.ConversationService(
  persistenceAddress, grpc.credentials.createInsecure());

const finishNames = {
  FINISH_REASON_STOP: 'stop',
  FINISH_REASON_LENGTH: 'length',
  FINISH_REASON_CONTENT_FILTER: 'content_filter',
  FINISH_REASON_TOOL_CALLS: 'tool_calls',
};

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

let defaultModel = null;
async function resolveModel(requested) {
  if (requested) return requested;
  if (defaultModel === null) {
    const { models } = await unary(inference, 'ListModels', {});
    const chosen = models.find((m) => m.is_default) || models[0];
    defaultModel = chosen ? chosen.name : '';
  }
  return defaultModel;
}

function send(ws, frame) {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
}

async function runTurn(ws, userId, frame) {
  const user = await unary(persistence, 'AppendMessage', {
    user_id: userId,
    conversation_id: frame.conversationId || '',
    role: 'ROLE_USER',
    content: frame.content,
    client_message_id: frame.id,
    model: frame.model || '',
    status: 'MESSAGE_STATUS_COMPLETE',
  });
  const conversationId = user.message.conversation_id;
  send(ws, { type: 'ack', id: frame.id, conversationId, messageId: user.message.id });

  const history = await unary(persistence, 'ListMessages', {
    user_id: userId,
    conversation_id: conversationId,
    page_size: historyMessages,
    newest: true,
  });
  const model = await resolveModel(frame.model);
  const assistant = await unary(persistence, 'AppendMessage', {
    user_id: userId,
    conversation_id: conversationId,
    parent_id: user.message.id,
    role: 'ROLE_ASSISTANT',
    model,
    status: 'MESSAGE_STATUS_STREAMING',
  });
  const messageId = assistant.message.id;
  send(ws, { type: 'stream_start', conversationId, messageId, model });

  const messages = history.messages
    .filter((m) => m.content !== '' && m.id !== messageId)
    .map((m) => ({ role: m.role, content: m.content }));

  await new Promise((resolve, reject) => {
    let seq = 0;
    let finishReason = 'stop';
    let usage = { prompt_tokens: 0, completion_tokens: 0 };
    let generateDone = false;
    let writerDone = false;
    let failed = false;
    const fail = (err) => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const maybeComplete = () => {
      if (!generateDone || !writerDone || failed) return;
      send(ws, {
        type: 'stream_complete',
        messageId,
        lastSeq: seq,
        finishReason,
        usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens },
      });
      resolve();
    };

    const writer = persistence.WriteMessageStream();
    writer.on('data', (ack) => {
      if (ack.finished) {
        writerDone = true;
        maybeComplete();
      }
    });
    writer.on('error', fail);
    writer.write({ open: { user_id: userId, message_id: messageId } });

    const stream = inference.Generate({ model, messages, user_id: userId, request_id: messageId });
    stream.on('data', (chunk) => {
      if (chunk.text_delta && chunk.text_delta.text !== '') {
        seq += 1;
        send(ws, { type: 'stream_token', messageId, seq, token: chunk.text_delta.text });
        writer.write({ delta: { seq, text: chunk.text_delta.text } });
      } else if (chunk.usage) {
        usage = chunk.usage;
      } else if (chunk.finish) {
        finishReason = finishNames[chunk.finish.reason] || 'stop';
      }
    });
    stream.on('error', (err) => {
      writer.write({ finish: { status: 'MESSAGE_STATUS_INTERRUPTED', finish_reason: err.message } });
      writer.end();
      fail(err);
    });
    stream.on('end', () => {
      generateDone = true;
      writer.write({
        finish: {
          status: 'MESSAGE_STATUS_COMPLETE',
          finish_reason: finishReason,
          usage: { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens },
        },
      });
      writer.end();
      maybeComplete();
    });
  });
}

let anonymous = 0;
const [host, portText] = [listen.slice(0, listen.lastIndexOf(':')), listen.slice(listen.lastIndexOf(':') + 1)];
const wss = new WebSocketServer({ host, port: Number(portText), path: '/ws/chat', perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  const query = new URL(req.url, 'http://edge').searchParams;
  const userId = query.get('userId') || `anonymous-${++anonymous}`;
  ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(data.toString());
    } catch (e) {
      send(ws, { type: 'error', code: 'invalid_frame', message: 'malformed JSON' });
      return;
    }
    if (frame.type === 'ping') {
      send(ws, { type: 'pong' });
      return;
    }
    if (frame.type !== 'message' || typeof frame.id !== 'string' || typeof frame.content !== 'string') {
      send(ws, { type: 'error', code: 'invalid_frame', message: 'unsupported frame', id: frame.id });
      return;
    }
    runTurn(ws, userId, frame).catch((err) => {
      send(ws, { type: 'error', code: 'internal', message: String(err.message || err), id: frame.id });
    });
  });
});

wss.on('listening', () => {
  const address = `${host}:${wss.address().port}`;
  console.log(JSON.stringify({
    ts: new Date().toISOString(), level: 'info', service: 'reference-edge', msg: 'listening',
    listen: address, metrics_listen: address,
  }));
});

function shutdown() {
  wss.close();
  for (const client of wss.clients) client.terminate();
  inference.close();
  persistence.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
