import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import test from 'ava';
import WebSocket from 'ws';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, TAG_HEADER, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { rawRequest, waitFor, type RawResponse } from '../proxy/support.js';

export { rawRequest, waitFor, type RawResponse };

/**
 * One gateway under `policy` in front of a fresh mock upstream for the whole
 * test file: started before its tests (handed to `started`), closed after them.
 */
export function gatewayForFile(policy: string, started: (s: { upstream: MockUpstream; gw: Harness }) => void): void {
  let running: { upstream: MockUpstream; gw: Harness | undefined } | undefined;
  test.before(async () => {
    running = { upstream: await startMockUpstream(), gw: undefined };
    running.gw = await startHarness(running.upstream.url, { policy });
    started({ upstream: running.upstream, gw: running.gw });
  });
  test.after.always(async () => {
    await running?.gw?.close();
    await running?.upstream.close();
  });
}

export interface ErrorShape {
  error: { message: string; type: string; param: string | null; code: string };
}

/** The OpenAI-shaped error of a raw response, or undefined when the body is not one. */
export function errorOf(res: RawResponse): ErrorShape['error'] | undefined {
  try {
    const parsed = JSON.parse(res.body) as Partial<ErrorShape>;
    return parsed.error;
  } catch {
    return undefined;
  }
}

/** Sends exactly these bytes and headers (no content-type is added), with the key as a bearer token. */
export function send(
  origin: string,
  key: string,
  opts: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string },
): Promise<RawResponse> {
  return rawRequest(origin, {
    method: opts.method ?? 'POST',
    path: opts.path,
    headers: { authorization: `Bearer ${key}`, ...opts.headers },
    ...(opts.body === undefined ? {} : { body: opts.body }),
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The x-governance-log-id of a raw response, checked to be a UUID before it reaches SQL. */
export function logIdOf(res: { headers: http.IncomingHttpHeaders }): string {
  const id = res.headers['x-governance-log-id'];
  if (typeof id !== 'string' || !UUID.test(id)) throw new Error(`x-governance-log-id is not a UUID: ${String(id)}`);
  return id;
}

export interface AuditRow {
  id: string;
  customer_id: string;
  model: string | null;
  operation: string;
  allowed: number;
  reason: string;
  method: string | null;
}

const COLUMNS = "id, customer_id, model, operation, allowed, reason, json_extract(meta, '$.method') AS method";

/** One decision row by its log id, read with the sqlite3 CLI. */
export function rowById(dbPath: string, logId: string): AuditRow | undefined {
  if (!UUID.test(logId)) throw new Error(`not a UUID: ${logId}`);
  return sqliteJson<AuditRow>(dbPath, `SELECT ${COLUMNS} FROM usagelog WHERE id = '${logId}'`)[0];
}

/** Every decision row of a customer, oldest first, read with the sqlite3 CLI. */
export function rowsOf(dbPath: string, customer: string): AuditRow[] {
  if (!/^[a-z0-9-]+$/.test(customer)) throw new Error('test customer ids are plain');
  return sqliteJson<AuditRow>(dbPath, `SELECT ${COLUMNS} FROM usagelog WHERE customer_id = '${customer}' ORDER BY created_at, id`);
}

export interface OutcomeView {
  status: number | null;
  error: string | null;
  total_tokens: number | null;
}

/** The outcome row of a forwarded request; it lands after the response ends, so this polls. */
export async function outcomeOf(dbPath: string, logId: string, timeoutMs = 3000): Promise<OutcomeView | undefined> {
  if (!UUID.test(logId)) throw new Error(`not a UUID: ${logId}`);
  return waitFor(
    () => sqliteJson<OutcomeView>(dbPath, `SELECT status, error, total_tokens FROM usagelog_outcome WHERE log_id = '${logId}'`)[0],
    timeoutMs,
  );
}

export type WsAttempt = { opened: WebSocket } | { refused: { status: number; body: string } } | { failed: Error };

/** Opens a WebSocket and reports whether it opened, was refused with an HTTP response, or failed otherwise. */
export function wsConnect(url: string, headers: Record<string, string>): Promise<WsAttempt> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve({ opened: ws }));
    ws.once('unexpected-response', (req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        req.destroy();
        resolve({ refused: { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') } });
      });
    });
    ws.once('error', (err) => resolve({ failed: err }));
  });
}

/** What a WebSocket attempt came to, for assertion messages. */
export function describeAttempt(a: WsAttempt): string {
  if ('opened' in a) return 'opened';
  if ('refused' in a) return `refused ${a.refused.status} ${a.refused.body}`;
  return `failed ${a.failed.message}`;
}

interface StreamedRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface StreamingUpstream {
  /** Base URL including /v1. */
  url: string;
  /** The requests that carried `tag` (see MockUpstream.tagged). */
  tagged(tag: Tag): StreamedRequest[];
  close(): Promise<void>;
}

/**
 * A provider that streams /v1/chat/completions and /v1/completions the way
 * OpenAI does: with `stream_options.include_usage` every chunk carries
 * `"usage":null` and a last chunk with empty `choices` carries the usage;
 * without it, no usage at all. Timestamps are fixed so two answers to the same
 * body are byte-identical.
 */
export async function startStreamingUpstream(): Promise<StreamingUpstream> {
  const received: StreamedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body });
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        // An unparsable body streams like an empty one; the tests look at what was received.
      }
      const model = typeof parsed.model === 'string' ? parsed.model : 'unknown';
      const options = parsed.stream_options as { include_usage?: unknown } | undefined;
      const includeUsage = typeof options === 'object' && options !== null && options.include_usage === true;
      const chat = path.startsWith('/v1/chat/completions');
      if (parsed.stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x', object: chat ? 'chat.completion' : 'text_completion', created: 0, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } }));
        return;
      }
      const base = chat
        ? { id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 0, model }
        : { id: 'cmpl-s', object: 'text_completion', created: 0, model };
      const nullUsage = includeUsage ? { usage: null } : {};
      const choice = (i: number, last: boolean) =>
        chat
          ? { index: 0, delta: last ? {} : { content: `tok${i} ` }, finish_reason: last ? 'stop' : null }
          : { text: last ? '' : `tok${i} `, index: 0, logprobs: null, finish_reason: last ? 'stop' : null };
      const events: string[] = [];
      for (let i = 0; i < 3; i++) events.push(`data: ${JSON.stringify({ ...base, choices: [choice(i, false)], ...nullUsage })}\n\n`);
      events.push(`data: ${JSON.stringify({ ...base, choices: [choice(3, true)], ...nullUsage })}\n\n`);
      if (includeUsage) events.push(`data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 } })}\n\n`);
      events.push('data: [DONE]\n\n');
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const e of events) res.write(e);
      res.end();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    tagged: (tag) => received.filter((r) => r.headers[TAG_HEADER] === tag[TAG_HEADER]),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** A multipart/form-data body written by hand, so every header byte is exactly as a test wants it. */
export function multipart(boundary: string, parts: { disposition: string; headers?: string[]; body: Buffer | string }[]): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const head = [`Content-Disposition: ${p.disposition}`, ...(p.headers ?? [])].join('\r\n');
    chunks.push(Buffer.from(`--${boundary}\r\n${head}\r\n\r\n`, 'latin1'), Buffer.isBuffer(p.body) ? p.body : Buffer.from(p.body, 'utf8'), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}
