import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as zlib from 'node:zlib';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

/**
 * The gateway forwards this header like any other, so a test that puts a
 * fresh tag on its requests can tell what the provider received of them from
 * what tests running beside it on the same upstream sent.
 */
export const TAG_HEADER = 'x-test-tag';
export type Tag = { readonly [TAG_HEADER]: string };

export function newTag(): Tag {
  return { [TAG_HEADER]: randomUUID() };
}

export interface ReceivedRequest {
  method: string;
  /** Path including the query string, exactly as the gateway sent it. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Date.now() when the request headers arrived. */
  at: number;
}

export interface MockUpstreamOptions {
  /** Called when a request's headers arrive, before the body is read. */
  onRequest?: (req: { method: string; path: string; headers: http.IncomingHttpHeaders }) => void;
}

export interface ReceivedWebSocket {
  path: string;
  headers: http.IncomingHttpHeaders;
  messages: string[];
}

export interface MockUpstream {
  /** Base URL including /v1, usable as a provider base_url. */
  url: string;
  origin: string;
  received: ReceivedRequest[];
  wsReceived: ReceivedWebSocket[];
  /** Requests whose client closed the connection before the mock finished responding. */
  readonly aborted: number;
  /** Errors thrown by opts.onRequest; the request that triggered one got a 500. */
  hookErrors: unknown[];
  setDelay(ms: number): void;
  setStream(chunks: number, gapMs: number): void;
  setStatus(path: string, status: number, body: unknown, headers?: Record<string, string>): void;
  /** Undoes one setStatus and nothing else, so a test can put back its override while others still read `received`. */
  clearStatus(path: string): void;
  /** The requests that carried `tag`, in arrival order. */
  tagged(tag: Tag): ReceivedRequest[];
  /** The WebSocket handshakes that carried `tag`, in arrival order. */
  taggedWebSockets(tag: Tag): ReceivedWebSocket[];
  /** Clears what was received and every setting; only for a test that no other test runs beside. */
  reset(): void;
  close(): Promise<void>;
}

interface Override {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

type JsonObject = Record<string, unknown>;

const DEFAULT_MODEL = 'gpt-4o-mini';
const DEFAULT_STREAM_CHUNKS = 3;
const DEFAULT_STREAM_GAP_MS = 0;

class BadJsonError extends Error {}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function pathnameOf(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function decodeBody(body: Buffer, encoding: string | undefined): Buffer {
  switch ((encoding ?? '').trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.gunzipSync(body);
    case 'deflate':
      return zlib.inflateSync(body);
    case 'br':
      return zlib.brotliDecompressSync(body);
    default:
      return body;
  }
}

function parseJsonBody(req: http.IncomingMessage, body: Buffer): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decodeBody(body, req.headers['content-encoding']).toString('utf8'));
  } catch (err) {
    throw new BadJsonError(
      `We could not parse the JSON body of your request. (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  // Non-object JSON (arrays, numbers) is valid JSON but carries none of the fields we echo.
  return isObject(parsed) ? parsed : {};
}

function modelOf(body: JsonObject): string {
  return typeof body.model === 'string' ? body.model : DEFAULT_MODEL;
}

function openAiError(message: string, type: string, code: string | null = null): JsonObject {
  return { error: { message, type, param: null, code } };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed || res.writableEnded) return;
  let payload: Buffer;
  if (Buffer.isBuffer(body)) payload = body;
  else if (typeof body === 'string') payload = Buffer.from(body, 'utf8');
  else payload = Buffer.from(JSON.stringify(body ?? null), 'utf8');
  const hasContentType = Object.keys(headers).some((h) => h.toLowerCase() === 'content-type');
  res.writeHead(status, {
    ...(hasContentType ? {} : { 'content-type': 'application/json' }),
    'content-length': String(payload.length),
    ...headers,
  });
  res.end(payload);
}

function embeddingInputCount(input: unknown): number {
  if (!Array.isArray(input)) return 1;
  // A flat array of numbers is a single pre-tokenised input, not many inputs.
  if (input.length > 0 && input.every((x) => typeof x === 'number')) return 1;
  return input.length;
}

function rawToString(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

export async function startMockUpstream(opts: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const received: ReceivedRequest[] = [];
  const wsReceived: ReceivedWebSocket[] = [];
  const hookErrors: unknown[] = [];
  const overrides = new Map<string, Override>();
  const sockets = new Set<Socket>();
  let aborted = 0;
  let delayMs = 0;
  let streamChunks = DEFAULT_STREAM_CHUNKS;
  let streamGapMs = DEFAULT_STREAM_GAP_MS;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const at = Date.now();
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const pathname = pathnameOf(path);

    const timers = new Set<NodeJS.Timeout>();
    let closed = false;
    // Writes to a torn-down socket can emit 'error'; the 'close' handler below is what accounts for it.
    res.on('error', () => {});
    res.on('close', () => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (!res.writableFinished) aborted++;
    });
    const sleep = (ms: number): Promise<void> =>
      new Promise((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, ms);
        timers.add(t);
      });
    const gone = (): boolean => closed || res.destroyed;

    let hookFailed = false;
    if (opts.onRequest) {
      try {
        opts.onRequest({ method, path, headers: req.headers });
      } catch (err) {
        hookErrors.push(err);
        hookFailed = true;
      }
    }

    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      // Client went away mid-body; 'close' on res does the bookkeeping.
      return;
    }
    const body = Buffer.concat(chunks);
    received.push({ method, path, headers: req.headers, body, at });

    if (hookFailed) {
      const err = hookErrors[hookErrors.length - 1];
      sendJson(res, 500, openAiError(`mock onRequest hook threw: ${String(err)}`, 'server_error'));
      return;
    }

    if (delayMs > 0) {
      await sleep(delayMs);
      if (gone()) return;
    }

    const override = overrides.get(pathname);
    if (override) {
      sendJson(res, override.status, override.body, override.headers);
      return;
    }

    try {
      await route(req, res, method, pathname, path, body, sleep, gone);
    } catch (err) {
      if (err instanceof BadJsonError) {
        sendJson(res, 400, openAiError(err.message, 'invalid_request_error'));
        return;
      }
      if (!res.headersSent) {
        sendJson(res, 500, openAiError(`mock upstream error: ${String(err)}`, 'server_error'));
      } else {
        res.destroy();
      }
    }
  }

  async function route(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    method: string,
    pathname: string,
    path: string,
    raw: Buffer,
    sleep: (ms: number) => Promise<void>,
    gone: () => boolean,
  ): Promise<void> {
    if (method === 'POST' && pathname === '/v1/chat/completions') {
      const body = parseJsonBody(req, raw);
      const model = modelOf(body);
      if (body.stream === true) {
        const includeUsage = isObject(body.stream_options) && body.stream_options.include_usage === true;
        await streamChat(res, model, includeUsage, sleep, gone);
        return;
      }
      sendJson(res, 200, {
        id: 'chatcmpl-mock',
        object: 'chat.completion',
        created: nowSeconds(),
        model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: 'mock reply', refusal: null },
            logprobs: null,
            finish_reason: 'stop',
          },
        ],
        usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 },
        system_fingerprint: 'fp_mock',
      });
      return;
    }

    if (method === 'POST' && pathname === '/v1/completions') {
      const body = parseJsonBody(req, raw);
      sendJson(res, 200, {
        id: 'cmpl-mock',
        object: 'text_completion',
        created: nowSeconds(),
        model: modelOf(body),
        choices: [{ text: 'mock completion', index: 0, logprobs: null, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
      });
      return;
    }

    if (method === 'POST' && pathname === '/v1/embeddings') {
      const body = parseJsonBody(req, raw);
      const n = embeddingInputCount(body.input);
      sendJson(res, 200, {
        object: 'list',
        data: Array.from({ length: n }, (_, index) => ({ object: 'embedding', index, embedding: [0.1, 0.2, 0.3] })),
        model: typeof body.model === 'string' ? body.model : 'text-embedding-3-small',
        usage: { prompt_tokens: 4, total_tokens: 4 },
      });
      return;
    }

    if (method === 'POST' && pathname === '/v1/responses') {
      const body = parseJsonBody(req, raw);
      sendJson(res, 200, {
        id: 'resp_mock',
        object: 'response',
        created_at: nowSeconds(),
        status: 'completed',
        error: null,
        incomplete_details: null,
        model: modelOf(body),
        output: [
          {
            type: 'message',
            id: 'msg_mock',
            status: 'completed',
            role: 'assistant',
            content: [{ type: 'output_text', text: 'mock reply', annotations: [] }],
          },
        ],
        output_text: 'mock reply',
        usage: { input_tokens: 9, output_tokens: 4, total_tokens: 13 },
      });
      return;
    }

    if (method === 'POST' && pathname === '/v1/moderations') {
      const body = parseJsonBody(req, raw);
      sendJson(res, 200, {
        id: 'modr-mock',
        model: typeof body.model === 'string' ? body.model : 'omni-moderation-latest',
        results: [
          {
            flagged: false,
            categories: { harassment: false, hate: false, 'self-harm': false, sexual: false, violence: false },
            category_scores: { harassment: 0.0001, hate: 0.0001, 'self-harm': 0.0001, sexual: 0.0001, violence: 0.0001 },
          },
        ],
      });
      return;
    }

    if (method === 'GET' && pathname === '/v1/models') {
      sendJson(res, 200, {
        object: 'list',
        data: [{ id: 'gpt-4o-mini', object: 'model', created: 0, owned_by: 'mock' }],
      });
      return;
    }

    sendJson(res, 200, { ok: true, path });
  }

  async function streamChat(
    res: http.ServerResponse,
    model: string,
    includeUsage: boolean,
    sleep: (ms: number) => Promise<void>,
    gone: () => boolean,
  ): Promise<void> {
    // Read once so a setStream() mid-stream does not change this response's shape.
    const n = streamChunks;
    const gap = streamGapMs;
    const created = nowSeconds();
    const event = (choices: unknown[], extra: JsonObject = {}): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-mock', object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;

    // Like OpenAI: with include_usage every other chunk carries `"usage":null`.
    const nullUsage: JsonObject = includeUsage ? { usage: null } : {};
    const events: string[] = [];
    for (let i = 0; i < n; i++) {
      events.push(event([{ index: 0, delta: { content: `tok${i} ` }, finish_reason: null }], nullUsage));
    }
    events.push(event([{ index: 0, delta: {}, finish_reason: 'stop' }], nullUsage));
    if (includeUsage) {
      events.push(event([], { usage: { prompt_tokens: 11, completion_tokens: n, total_tokens: 11 + n } }));
    }
    events.push('data: [DONE]\n\n');

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    // Headers go out now so the gateway can start relaying before the first gap elapses.
    res.flushHeaders();
    for (let i = 0; i < events.length; i++) {
      if (i > 0) {
        await sleep(gap);
      }
      if (gone()) return;
      res.write(events[i]);
    }
    res.end();
  }

  const server = http.createServer((req, res) => {
    void handle(req, res);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
    const path = req.url ?? '/';
    if (pathnameOf(path) !== '/v1/realtime') {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const record: ReceivedWebSocket = { path, headers: req.headers, messages: [] };
      wsReceived.push(record);
      ws.on('error', () => {});
      ws.on('message', (data: RawData, isBinary: boolean) => {
        if (isBinary) {
          ws.send(data, { binary: true });
          return;
        }
        const text = rawToString(data);
        record.messages.push(text);
        ws.send(`echo:${text}`);
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;

  return {
    url: `${origin}/v1`,
    origin,
    received,
    wsReceived,
    hookErrors,
    get aborted(): number {
      return aborted;
    },
    setDelay(ms: number): void {
      delayMs = ms;
    },
    setStream(chunks: number, gapMs: number): void {
      streamChunks = chunks;
      streamGapMs = gapMs;
    },
    setStatus(path: string, status: number, body: unknown, headers: Record<string, string> = {}): void {
      overrides.set(pathnameOf(path), { status, body, headers });
    },
    clearStatus(path: string): void {
      overrides.delete(pathnameOf(path));
    },
    tagged(tag: Tag): ReceivedRequest[] {
      return received.filter((r) => r.headers[TAG_HEADER] === tag[TAG_HEADER]);
    },
    taggedWebSockets(tag: Tag): ReceivedWebSocket[] {
      return wsReceived.filter((r) => r.headers[TAG_HEADER] === tag[TAG_HEADER]);
    },
    reset(): void {
      // Cleared in place so arrays a test already holds stay live.
      received.length = 0;
      wsReceived.length = 0;
      hookErrors.length = 0;
      aborted = 0;
      overrides.clear();
      delayMs = 0;
      streamChunks = DEFAULT_STREAM_CHUNKS;
      streamGapMs = DEFAULT_STREAM_GAP_MS;
    },
    async close(): Promise<void> {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}
