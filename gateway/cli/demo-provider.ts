import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A local stand-in for an OpenAI-compatible provider, so `govgate demo` needs no account and no network. */
export interface DemoProvider {
  /** http://127.0.0.1:PORT/v1, what a provider's base_url is set to. */
  readonly baseUrl: string;
  close(): Promise<void>;
}

const REPLY = 'Hello from the govgate demo provider. This answer is canned: no model was called.';
const MODELS = ['gpt-4o-mini', 'text-embedding-3-small'];
const MAX_BODY_BYTES = 1024 * 1024;

export async function startDemoProvider(): Promise<DemoProvider> {
  const server = createServer((req, res) => {
    void answer(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: err instanceof Error ? err.message : String(err), type: 'server_error' } });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // The gateway keeps pooled keep-alive sockets open; without this close() would wait for them to time out.
        server.closeAllConnections();
      }),
  };
}

async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const body = req.method === 'POST' ? await readJson(req) : {};
  const model = typeof body.model === 'string' ? body.model : 'gpt-4o-mini';
  if (req.method === 'GET' && url.pathname === '/v1/models') {
    sendJson(res, 200, { object: 'list', data: MODELS.map((id) => ({ id, object: 'model', created: 0, owned_by: 'govgate-demo' })) });
  } else if (req.method === 'POST' && url.pathname === '/v1/chat/completions') {
    if (body.stream === true) streamChat(res, model, body.stream_options);
    else sendJson(res, 200, chatCompletion(model));
  } else if (req.method === 'POST' && url.pathname === '/v1/embeddings') {
    const inputs: unknown[] = Array.isArray(body.input) ? (body.input as unknown[]) : [body.input];
    sendJson(res, 200, {
      object: 'list',
      model,
      data: inputs.map((input, index) => ({ object: 'embedding', index, embedding: fakeEmbedding(String(input)) })),
      usage: { prompt_tokens: inputs.length * 4, total_tokens: inputs.length * 4 },
    });
  } else {
    sendJson(res, 404, { error: { message: `the demo provider does not serve ${req.method} ${url.pathname}`, type: 'invalid_request_error' } });
  }
}

function chatCompletion(model: string): Record<string, unknown> {
  return {
    id: 'chatcmpl-demo',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: REPLY }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 12, completion_tokens: 16, total_tokens: 28 },
  };
}

function streamChat(res: ServerResponse, model: string, options: unknown): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const base = { id: 'chatcmpl-demo', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model };
  const send = (chunk: Record<string, unknown>) => res.write(`data: ${JSON.stringify({ ...base, ...chunk })}\n\n`);
  send({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  for (const word of REPLY.split(/(?<= )/)) send({ choices: [{ index: 0, delta: { content: word }, finish_reason: null }] });
  send({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
  // As OpenAI does: the usage chunk only when the client asked for it.
  if (typeof options === 'object' && options !== null && (options as { include_usage?: unknown }).include_usage === true) {
    send({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 16, total_tokens: 28 } });
  }
  res.end('data: [DONE]\n\n');
}

/** A small deterministic vector, so the same input always embeds the same way. */
function fakeEmbedding(input: string): number[] {
  const vector = new Array<number>(8).fill(0);
  for (let i = 0; i < input.length; i++) vector[i % 8]! += input.charCodeAt(i) / 1000;
  const norm = Math.hypot(...vector) || 1;
  return vector.map((v) => Number((v / norm).toFixed(6)));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large for the demo provider');
    chunks.push(chunk);
  }
  if (size === 0) return {};
  const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
