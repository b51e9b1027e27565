import * as net from 'node:net';
import type { IncomingMessage } from 'node:http';
import test, { type ExecutionContext } from 'ava';
import WebSocket from 'ws';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { closedPortUrl, outcomeRow, rawRequest, waitFor, type OpenAIErrorShape, type RawResponse } from './support.js';

const MAX_BODY = 4096;

/** acme may use one model, with a token cap; everyone else ("open") may use anything. */
const POLICY = `
version: 1
mode: enforce
block_threshold: 70
customers:
  "*":
    models: ["*"]
    operations: ["*"]
  acme:
    models: ["gpt-4o-mini"]
    operations: ["*"]
    max_tokens: 2048
`;

const ALLOWED = 'gpt-4o-mini';
const DISALLOWED = 'gpt-4o';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let upstream: MockUpstream;
let gw: Harness;
let acme: string;
let open: string;

test.before(async () => {
  upstream = await startMockUpstream();
  const deadUrl = await closedPortUrl();
  gw = await startHarness(upstream.url, {
    policy: POLICY,
    maxBodyBytes: MAX_BODY,
    providers: [
      // First, so model-less routes (GET /v1/models/...) go to the mock.
      { name: 'openai', base_url: upstream.url, models: ['gpt-*'], api_key_env: 'OPENAI_API_KEY' },
      { name: 'dead', base_url: deadUrl, models: ['dead-*'], api_key_env: 'OPENAI_API_KEY' },
    ],
  });
  acme = gw.createKey('acme').key;
  open = gw.createKey('open').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

function send(key: string, path: string, body: string | Buffer, contentType = 'application/json', method = 'POST'): Promise<RawResponse> {
  return rawRequest(gw.url, { method, path, headers: { authorization: `Bearer ${key}`, 'content-type': contentType }, body });
}

function errorOf(res: RawResponse): OpenAIErrorShape['error'] {
  return (JSON.parse(res.body) as OpenAIErrorShape).error;
}

/** Runs `act` and asserts the provider received nothing meanwhile. */
async function notForwarded<T>(t: ExecutionContext, act: () => Promise<T>): Promise<T> {
  const before = upstream.received.length;
  const result = await act();
  t.is(upstream.received.length, before, `forwarded: ${upstream.received.slice(before).map((r) => `${r.method} ${r.path}`).join(', ')}`);
  return result;
}

function assertRefused(t: ExecutionContext, res: RawResponse, status: number, code: string, param?: string): void {
  t.is(res.status, status, res.body);
  if (res.status !== status) return;
  const error = errorOf(res);
  t.is(error.code, code);
  if (param !== undefined) t.is(error.param, param);
}

// ---------------------------------------------------------------- paths

const CHAT = JSON.stringify({ model: ALLOWED, messages: [{ role: 'user', content: 'hi' }] });

test.serial('the plain chat path is forwarded (control for the path variants below)', async (t) => {
  const before = upstream.received.length;
  const res = await send(acme, '/v1/chat/completions', CHAT);
  t.is(res.status, 200, res.body);
  t.is(upstream.received.length, before + 1);
});

for (const path of ['/v1/chat/%63ompletions', '/v1/chat/completions;x=1', '/v1/chat//completions']) {
  test.serial(`POST ${path} gets 404 route_not_found and is not forwarded`, async (t) => {
    // A provider may decode or normalise these into a route other than the one the policy judged.
    const res = await notForwarded(t, () => send(acme, path, CHAT));
    assertRefused(t, res, 404, 'route_not_found');
  });
}

test.serial('a fine-tuned model id with colons in the path is still forwarded', async (t) => {
  const path = '/v1/models/ft:gpt-4o-mini:org::abc';
  const before = upstream.received.length;
  const res = await rawRequest(gw.url, { method: 'GET', path, headers: { authorization: `Bearer ${acme}` } });
  t.is(res.status, 200, res.body);
  t.is(upstream.received.length, before + 1);
  t.is(upstream.received.at(-1)?.path, path);
});

// ---------------------------------------------------------------- token caps

test.serial('max_tokens under the cap is forwarded (control for the cap checks below)', async (t) => {
  const res = await send(acme, '/v1/chat/completions', JSON.stringify({ model: ALLOWED, messages: [], max_tokens: 100 }));
  t.is(res.status, 200, res.body);
});

test.serial('max_tokens as a string is refused with 400 invalid_request naming max_tokens', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', JSON.stringify({ model: ALLOWED, messages: [], max_tokens: '100000' })));
  assertRefused(t, res, 400, 'invalid_request', 'max_tokens');
});

test.serial('a small max_tokens beside a large max_completion_tokens is held to the larger: 403', async (t) => {
  const body = JSON.stringify({ model: ALLOWED, messages: [], max_tokens: 1, max_completion_tokens: 100000 });
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', body));
  assertRefused(t, res, 403, 'policy_blocked');
});

test.serial('max_output_tokens over the cap is blocked with 403', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/responses', JSON.stringify({ model: ALLOWED, input: 'hi', max_output_tokens: 5000 })));
  assertRefused(t, res, 403, 'policy_blocked');
});

// ---------------------------------------------------------------- request bodies

const BOUNDARY = 'govgate-test-boundary';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** A transcription upload: the given form fields, then a small file part. */
function multipart(fields: [string, string][]): Buffer {
  const parts = fields.map(([name, value]) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
  parts.push(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF0000WAVE\r\n`);
  return Buffer.from(`${parts.join('')}--${BOUNDARY}--\r\n`);
}

test.serial('a multipart upload with one allowed model is forwarded, one disallowed model is blocked (controls)', async (t) => {
  const allowed = await send(acme, '/v1/audio/transcriptions', multipart([['model', ALLOWED]]), MULTIPART);
  t.is(allowed.status, 200, allowed.body);
  const blocked = await notForwarded(t, () => send(acme, '/v1/audio/transcriptions', multipart([['model', DISALLOWED]]), MULTIPART));
  assertRefused(t, blocked, 403, 'policy_blocked');
});

test.serial('multipart fields named MODEL and model are two model fields, refused with 400', async (t) => {
  // Providers read field names case-insensitively, so either may be the one they serve.
  const body = multipart([['MODEL', ALLOWED], ['model', DISALLOWED]]);
  const res = await notForwarded(t, () => send(acme, '/v1/audio/transcriptions', body, MULTIPART));
  assertRefused(t, res, 400, 'invalid_request', 'model');
});

test.serial('a multipart body with two model fields is refused with 400', async (t) => {
  // Providers differ on which of the two wins, so the policy cannot know which one it judged.
  const body = multipart([['model', ALLOWED], ['model', DISALLOWED]]);
  const res = await notForwarded(t, () => send(acme, '/v1/audio/transcriptions', body, MULTIPART));
  assertRefused(t, res, 400, 'invalid_request');
});

test.serial('a JSON body labelled multipart without its boundary in the body is refused with 400', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', JSON.stringify({ model: DISALLOWED }), 'multipart/form-data; boundary=zz'));
  assertRefused(t, res, 400, 'invalid_request');
});

test.serial('a JSON body with a UTF-8 BOM sent as text/plain is refused with 400: parsers differ on skipping it', async (t) => {
  const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ model: DISALLOWED, messages: [] }))]);
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', body, 'text/plain'));
  assertRefused(t, res, 400, 'invalid_request');
});

test.serial('a model name over 256 characters is refused with 400, in JSON and in multipart', async (t) => {
  const long = `gpt-${'x'.repeat(300)}`;
  // "open" may use any model, so only the length can refuse it.
  const json = await notForwarded(t, () => send(open, '/v1/chat/completions', JSON.stringify({ model: long, messages: [] })));
  assertRefused(t, json, 400, 'invalid_request', 'model');
  const form = await notForwarded(t, () => send(open, '/v1/audio/transcriptions', multipart([['model', long]]), MULTIPART));
  assertRefused(t, form, 400, 'invalid_request', 'model');
});

// ---------------------------------------------------------------- /v1/check

test.serial('GET /v1/check gets 405 method_not_allowed and is not forwarded', async (t) => {
  const res = await notForwarded(t, () => rawRequest(gw.url, { method: 'GET', path: '/v1/check', headers: { authorization: `Bearer ${acme}` } }));
  assertRefused(t, res, 405, 'method_not_allowed');
});

// ---------------------------------------------------------------- refusal headers

function assertRefusalHeaders(t: ExecutionContext, res: RawResponse): void {
  t.is(res.headers['x-governance-decision'], 'block');
  t.is(res.headers['x-governance-risk-score'], '0');
  t.regex(String(res.headers['x-governance-log-id']), UUID);
}

test.serial('a 400 for malformed JSON carries the block decision and risk score 0', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', '{"model":"gpt-4o-mini",'));
  assertRefused(t, res, 400, 'invalid_request');
  assertRefusalHeaders(t, res);
});

test.serial('a 413 for a body over max_body_bytes carries the block decision and risk score 0', async (t) => {
  const big = JSON.stringify({ model: ALLOWED, messages: [{ role: 'user', content: 'y'.repeat(MAX_BODY * 2) }] });
  const res = await notForwarded(t, () =>
    fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${acme}`, 'content-type': 'application/json' }, body: big }),
  );
  t.is(res.status, 413);
  t.is(((await res.json()) as OpenAIErrorShape).error.code, 'request_too_large');
  t.is(res.headers.get('x-governance-decision'), 'block');
  t.is(res.headers.get('x-governance-risk-score'), '0');
  t.regex(String(res.headers.get('x-governance-log-id')), UUID);
});

// ---------------------------------------------------------------- upgrades

interface RawExchange {
  /** Everything the gateway sent before closing the socket. */
  data: string;
  /** The socket was still open after the wait: neither answered nor closed. */
  hung: boolean;
  error: Error | null;
}

/** Writes a request verbatim on a fresh socket and collects the answer until the gateway closes it. */
function rawExchange(request: string, timeoutMs = 3000): Promise<RawExchange> {
  const { hostname, port } = new URL(gw.url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let error: Error | null = null;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data: Buffer.concat(chunks).toString('utf8'), hung: true, error });
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => (error = err));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks).toString('utf8'), hung: false, error });
    });
    socket.write(request);
  });
}

function websocketRows(keyId: string): { id: string; model: string | null; allowed: number }[] {
  return sqliteJson(gw.dbPath, `SELECT id, model, allowed FROM usagelog WHERE api_key_id = '${keyId}' AND json_extract(meta, '$.kind') = 'websocket'`);
}

test.serial('a POST asking to upgrade to h2c gets a 400 answer and leaves no websocket audit row', async (t) => {
  const { key, id } = gw.createKey('acme', 'h2c');
  t.regex(id, /^[A-Za-z0-9_]+$/);
  const body = JSON.stringify({ model: ALLOWED, messages: [] });
  const exchange = await rawExchange(
    'POST /v1/chat/completions HTTP/1.1\r\n' +
      `Host: ${new URL(gw.url).host}\r\n` +
      `Authorization: Bearer ${key}\r\n` +
      'Content-Type: application/json\r\n' +
      'Connection: Upgrade, HTTP2-Settings\r\n' +
      'Upgrade: h2c\r\n' +
      'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  t.false(exchange.hung, 'the gateway neither answered nor closed the connection');
  const status = /^HTTP\/1\.[01] (\d{3}) /.exec(exchange.data)?.[1];
  t.is(status, '400', `expected an HTTP 400 answer, got ${JSON.stringify(exchange.data.slice(0, 200))} (socket error: ${String(exchange.error)})`);
  const payload = exchange.data.slice(exchange.data.indexOf('\r\n\r\n') + 4);
  if (status === '400') t.is((JSON.parse(payload) as OpenAIErrorShape).error.code, 'invalid_request');
  t.deepEqual(websocketRows(id), [], 'a request that was never upgraded is not audited as a WebSocket');
});

type Attempt = { opened: WebSocket } | { refused: number } | { failed: Error };

function connect(model: string, key: string): Promise<Attempt> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/realtime?model=${encodeURIComponent(model)}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    // A refusal may be followed by a socket error after the attempt is settled; it must not go unhandled.
    ws.on('error', (err) => resolve({ failed: err }));
    ws.once('open', () => resolve({ opened: ws }));
    ws.once('unexpected-response', (req, res: IncomingMessage) => {
      res.resume();
      res.on('end', () => {
        req.destroy();
        resolve({ refused: res.statusCode ?? 0 });
      });
    });
  });
}

function describeAttempt(a: Attempt): string {
  if ('opened' in a) return 'opened';
  if ('refused' in a) return `refused with ${a.refused}`;
  return `failed: ${a.failed.message}`;
}

test.serial('a WebSocket to an unreachable provider gets 502 and an upstream_unavailable outcome without a status', async (t) => {
  const { key, id } = gw.createKey('open', 'ws-dead');
  t.regex(id, /^[A-Za-z0-9_]+$/);
  const attempt = await connect('dead-realtime', key);
  if ('opened' in attempt) attempt.opened.terminate();
  t.deepEqual(attempt, { refused: 502 }, describeAttempt(attempt));

  const rows = websocketRows(id);
  t.is(rows.length, 1, 'the decision has its row');
  const logId = rows[0]?.id;
  if (logId === undefined) return;
  t.is(rows[0]?.allowed, 1);
  // Outcome rows are batched, so they land shortly after the socket closes.
  const outcome = await waitFor(() => outcomeRow(gw.dbPath, logId), 1500);
  t.truthy(outcome, 'no outcome row within 1.5 s');
  t.is(outcome?.error, 'upstream_unavailable');
  t.is(outcome?.status, null, 'the provider never answered, so there is no status to record');
});

test.serial('a WebSocket the provider accepted has an outcome row with status 101 once closed', async (t) => {
  const { key, id } = gw.createKey('open', 'ws-ok');
  t.regex(id, /^[A-Za-z0-9_]+$/);
  const attempt = await connect('gpt-4o-realtime-preview', key);
  if (!('opened' in attempt)) {
    t.fail(describeAttempt(attempt));
    return;
  }
  const ws = attempt.opened;
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.close();
  await closed;

  const logId = websocketRows(id)[0]?.id;
  t.truthy(logId, 'the decision has its row');
  if (logId === undefined) return;
  const outcome = await waitFor(() => outcomeRow(gw.dbPath, logId), 1500);
  t.truthy(outcome, 'no outcome row within 1.5 s');
  t.is(outcome?.status, 101);
  t.is(outcome?.error, null);
});
