// Drives one MCP server with the official TypeScript SDK client (2025-11-25 era) through a sequence
// from sequences/*.json and writes the transcript: per step the request, the outcome as it came
// off the wire, the notifications and the server's requests (sampling, elicitation, roots).
// Usage: node drive-typescript.mjs SEQUENCE OUT [--sandbox DIR] (--stdio COMMAND ARGS... | --url URL --token TOKEN)
import { readFileSync, writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const ERA = '2025-11-25';
const [sequenceFile, outFile, ...rest] = process.argv.slice(2);
const option = (name) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : undefined);
const sandbox = option('--sandbox') ?? '';
// $SANDBOX in the sequence stands for the allowed directory of this run.
const sequence = JSON.parse(readFileSync(sequenceFile, 'utf8').replaceAll('$SANDBOX', sandbox));

// The client's fixed answers: the same in every run, so any difference comes from the path between.
const answers = {
  sampling: { role: 'assistant', model: 'canned-model', stopReason: 'endTurn', content: { type: 'text', text: 'Canned sampling answer, 0.7 °C.' } },
  form: {
    action: 'accept',
    content: {
      name: 'Ada Lovelace', check: true, firstLine: 'It was a dark and stormy night.', email: 'ada@example.com',
      homepage: 'https://example.com/ada', birthdate: '1815-12-10', integer: 7, number: 2.5,
      untitledSingleSelectEnum: 'Joey', untitledMultipleSelectEnum: ['Piano', 'Bass'], titledSingleSelectEnum: 'hero-2',
      titledMultipleSelectEnum: ['fish-3'], legacyTitledEnum: 'pet-2',
    },
  },
  url: { action: 'accept' },
};

let current; // the step being recorded: everything on the wire lands in it
const transcript = [];

// Over HTTP, which stream each message came on: the standalone GET stream, or the POST of which
// request. Read from a copy of each response body, so the SDK's own reading is untouched.
const arrivals = [];
async function watchingFetch(url, init = {}) {
  const response = await fetch(url, init);
  const type = response.headers.get('content-type') ?? '';
  if (!response.body || !/text\/event-stream|application\/json/.test(type)) return response;
  let via = (init.method ?? 'GET').toUpperCase();
  try {
    via += ` ${JSON.parse(init.body).method ?? 'response'}`;
  } catch {}
  const [mine, theirs] = response.body.tee();
  collect(mine, type.includes('json'), via);
  return new Response(theirs, { status: response.status, statusText: response.statusText, headers: response.headers });
}
async function collect(stream, json, via) {
  let text = '';
  const push = (data) => {
    try {
      arrivals.push({ via, message: JSON.parse(data) });
    } catch {}
  };
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk.replaceAll('\r\n', '\n');
      for (let end; !json && (end = text.indexOf('\n\n')) >= 0; text = text.slice(end + 2)) {
        const data = text.slice(0, end).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart());
        if (data.length) push(data.join('\n'));
      }
    }
  } catch {}
  if (json && text) push(text);
}
// The stream a received message came on (stdio has none), each arrival used once.
function viaOf(message) {
  const arrival = arrivals.find((a) => !a.used && a.message.method === message.method && a.message.id === message.id);
  if (!arrival) return undefined;
  arrival.used = true;
  return arrival.via;
}

// Everything the SDK sends and receives passes these two taps, untouched.
function tap(transport) {
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    current?.sent.push(message);
    return send(message, options);
  };
  let handler;
  Object.defineProperty(transport, 'onmessage', {
    get: () => handler && ((message, extra) => {
      current?.received.push(message);
      handler(message, extra);
    }),
    set: (fn) => { handler = fn; },
  });
  return transport;
}

const transport = tap(rest.includes('--stdio')
  ? new StdioClientTransport({ command: option('--stdio'), args: rest.slice(rest.indexOf('--stdio') + 2), stderr: 'ignore' })
  : new StreamableHTTPClientTransport(new URL(option('--url')), {
    fetch: watchingFetch,
    requestInit: { headers: { authorization: `Bearer ${option('--token')}` } },
    // No resuming: this SDK takes a stream that ended on an error response for one cut short and
    // resumes it with Last-Event-ID, and server-everything's example event store then replays the
    // events of every stream, so notifications came twice (directly; not through the gateway).
    reconnectionOptions: { initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1, maxRetries: 0 },
  }));

const client = new Client({ name: 'transparency-typescript', version: '1.0.0' }, {
  capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } },
});
client.setRequestHandler(CreateMessageRequestSchema, async () => answers.sampling);
client.setRequestHandler(ElicitRequestSchema, async (request) => (request.params.mode === 'url' ? answers.url : answers.form));
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: sequence.roots }));

const call = {
  initialize: () => client.connect(transport),
  ping: (p, o) => client.ping(o),
  'logging/setLevel': (p, o) => client.setLoggingLevel(p.level, o),
  'tools/list': (p, o) => client.listTools(p, o),
  'tools/call': (p, o) => client.callTool(p, undefined, o),
  'prompts/list': (p, o) => client.listPrompts(p, o),
  'prompts/get': (p, o) => client.getPrompt(p, o),
  'resources/list': (p, o) => client.listResources(p, o),
  'resources/templates/list': (p, o) => client.listResourceTemplates(p, o),
  'resources/read': (p, o) => client.readResource(p, o),
  'resources/subscribe': (p, o) => client.subscribeResource(p, o),
  'resources/unsubscribe': (p, o) => client.unsubscribeResource(p, o),
  'completion/complete': (p, o) => client.complete(p, o),
  // A task-augmented call: the SDK polls tasks/get, then fetches tasks/result.
  'tools/call as task': async (p, o) => {
    for await (const message of client.experimental.tasks.callToolStream(p, undefined, o)) {
      if (message.type === 'error') throw message.error;
    }
  },
};

const bare = ({ method, params }) => (params === undefined ? { method } : { method, params });
const onWire = (m) => {
  const via = viaOf(m);
  return via === undefined ? bare(m) : { ...bare(m), via };
};
const outcome = (answer) => (answer ? ('error' in answer ? { error: answer.error } : { result: answer.result }) : null);

// One step's record, from what crossed the wire while it ran.
function record(step, sent, received, sdkError) {
  const answerTo = (request) => received.find((m) => request && m.id === request.id && m.method === undefined);
  const request = sent.find((m) => m.method === step.method.replace(' as task', '') && m.id !== undefined);
  const entry = {
    step: step.step,
    request: request ? bare(request) : null,
    outcome: outcome(answerTo(request)),
    notifications: received.filter((m) => m.method && m.id === undefined).map(onWire),
    asked: received.filter((m) => m.method && m.id !== undefined).map(onWire),
  };
  // A task's own outcome comes later, from tasks/result (how often tasks/get polled is timing).
  const taskResult = sent.findLast((m) => m.method === 'tasks/result');
  if (taskResult) entry.taskResult = outcome(answerTo(taskResult));
  if (sdkError) entry.sdkError = sdkError;
  return entry;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let status = 0;
try {
  for (const step of sequence.steps) {
    if ((step.eras && !step.eras.includes(ERA)) || (step.clients && !step.clients.includes('typescript'))) continue;
    current = { sent: [], received: [] };
    let sdkError;
    try {
      const options = { timeout: 60_000, ...(step.progress ? { onprogress: () => {}, resetTimeoutOnProgress: true } : {}) };
      await call[step.method](step.params ?? {}, options);
    } catch (error) {
      sdkError = `${error?.name}: ${error?.message}`;
    }
    await sleep((step.settle ?? 0) + 20); // +20: the copies of the response bodies are read too
    transcript.push(record(step, current.sent, current.received, sdkError));
    if (step.method === 'initialize' && sdkError) throw new Error(`could not connect: ${sdkError}`);
  }
} catch (error) {
  console.error(`drive-typescript: ${error?.message ?? error}`);
  status = 1;
} finally {
  current = undefined;
  writeFileSync(outFile, `${JSON.stringify(transcript, null, 1)}\n`);
  await transport.terminateSession?.().catch(() => {});
  await client.close().catch(() => {});
}
process.exit(status);
