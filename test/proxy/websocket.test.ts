import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import test from 'ava';
import WebSocket from 'ws';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { policy } from '../helpers/policy-builder.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { closedPortUrl, outcomeRow, waitFor, type OpenAIErrorShape } from './support.js';

const POLICY = policy().catchAll().customer('acme', { models: ['gpt-4o-realtime-preview'] }).yaml();

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, {
    policy: POLICY,
    providers: [
      { name: 'openai', base_url: upstream.url, models: ['gpt-*'], api_key_env: 'OPENAI_API_KEY' },
      { name: 'dead', base_url: await closedPortUrl(), models: ['dead-*'], api_key_env: 'OPENAI_API_KEY' },
    ],
  });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

function realtimeUrl(model: string): string {
  return `${gw.url.replace('http', 'ws')}/v1/realtime?model=${encodeURIComponent(model)}`;
}

type Attempt = { opened: WebSocket } | { refused: IncomingMessage & { body: string } } | { failed: Error };

/** Opens a WebSocket and reports whether it opened, was refused with an HTTP response, or failed otherwise. */
function connect(url: string, headers: Record<string, string>): Promise<Attempt> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve({ opened: ws }));
    ws.once('unexpected-response', (req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        req.destroy();
        resolve({ refused: Object.assign(res, { body: Buffer.concat(chunks).toString('utf8') }) });
      });
    });
    // A refusal may be followed by a socket error after the attempt is settled; it must not go unhandled.
    ws.on('error', (err) => resolve({ failed: err }));
  });
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message within 3 s')), 3000);
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolve(data.toString());
    });
  });
}

test('an allowed realtime WebSocket is proxied with the provider key', async (t) => {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const attempt = await connect(realtimeUrl('gpt-4o-realtime-preview'), {
    authorization: `Bearer ${key}`,
    cookie: 'session=abc',
    'x-governance-metadata': JSON.stringify({ team: 'voice' }),
    ...tag,
  });
  if (!('opened' in attempt)) {
    t.fail(`connection did not open: ${JSON.stringify('refused' in attempt ? attempt.refused.statusCode : String(attempt.failed))}`);
    return;
  }
  const ws = attempt.opened;
  try {
    const reply = nextMessage(ws);
    ws.send('{"type":"session.update"}');
    t.is(await reply, 'echo:{"type":"session.update"}');
  } finally {
    ws.close();
  }

  const [seen] = upstream.taggedWebSockets(tag);
  if (!seen) return t.fail('the provider saw no handshake');
  t.is(seen.path, '/v1/realtime?model=gpt-4o-realtime-preview');
  t.is(seen.headers.authorization, `Bearer ${UPSTREAM_SECRET}`);
  t.false(JSON.stringify(seen.headers).includes(key), 'the client key reached the provider');
  t.is(seen.headers.cookie, undefined);
  t.deepEqual(Object.keys(seen.headers).filter((h) => h.startsWith('x-governance-')), []);
  t.deepEqual(seen.messages, ['{"type":"session.update"}']);
});

test('a WebSocket upgrade without a key is refused with 401', async (t) => {
  const tag = newTag();
  const attempt = await connect(realtimeUrl('gpt-4o-realtime-preview'), { ...tag });
  if (!('refused' in attempt)) {
    t.fail('the upgrade was not refused with an HTTP response');
    return;
  }
  t.is(attempt.refused.statusCode, 401);
  t.is((JSON.parse(attempt.refused.body) as { error: { code: string } }).error.code, 'invalid_api_key');
  t.deepEqual(upstream.taggedWebSockets(tag), []);
});

test('a WebSocket upgrade for a model the customer may not use is refused with 403', async (t) => {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const attempt = await connect(realtimeUrl('gpt-4o-mini-realtime-preview'), { authorization: `Bearer ${key}`, ...tag });
  if (!('refused' in attempt)) {
    t.fail('the upgrade was not refused with an HTTP response');
    return;
  }
  t.is(attempt.refused.statusCode, 403);
  t.is((JSON.parse(attempt.refused.body) as { error: { code: string } }).error.code, 'policy_blocked');
  t.deepEqual(upstream.taggedWebSockets(tag), []);
});

test('every WebSocket decision has an audit row', async (t) => {
  const { key, id } = gw.createKey('acme', 'ws-audit');
  const allowed = await connect(realtimeUrl('gpt-4o-realtime-preview'), { authorization: `Bearer ${key}` });
  t.true('opened' in allowed);
  if ('opened' in allowed) allowed.opened.close();
  const blocked = await connect(realtimeUrl('gpt-4o-mini-realtime-preview'), { authorization: `Bearer ${key}` });
  t.true('refused' in blocked);

  const rows = sqliteJson(gw.dbPath, `SELECT model, operation, allowed FROM usagelog WHERE api_key_id = '${id}' ORDER BY allowed DESC`);
  t.deepEqual(rows, [
    { model: 'gpt-4o-realtime-preview', operation: 'realtime', allowed: 1 },
    { model: 'gpt-4o-mini-realtime-preview', operation: 'realtime', allowed: 0 },
  ]);
});

function websocketRows(keyId: string): { id: string; model: string | null; allowed: number }[] {
  if (!/^[A-Za-z0-9_]+$/.test(keyId)) throw new Error(`not a key id: ${keyId}`);
  return sqliteJson(gw.dbPath, `SELECT id, model, allowed FROM usagelog WHERE api_key_id = '${keyId}' AND json_extract(meta, '$.kind') = 'websocket'`);
}

function describeAttempt(a: Attempt): string {
  if ('opened' in a) return 'opened';
  if ('refused' in a) return `refused with ${a.refused.statusCode}`;
  return `failed: ${a.failed.message}`;
}

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

test('a POST asking to upgrade to h2c gets a 400 answer and leaves no websocket audit row', async (t) => {
  const { key, id } = gw.createKey('acme', 'h2c');
  const body = JSON.stringify({ model: 'gpt-4o-realtime-preview', messages: [] });
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

test('a WebSocket to an unreachable provider gets 502 and an upstream_unavailable outcome without a status', async (t) => {
  const { key, id } = gw.createKey('open', 'ws-dead');
  const attempt = await connect(realtimeUrl('dead-realtime'), { authorization: `Bearer ${key}` });
  if ('opened' in attempt) attempt.opened.terminate();
  t.true('refused' in attempt && attempt.refused.statusCode === 502, describeAttempt(attempt));

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

test('a WebSocket the provider accepted has an outcome row with status 101 once closed', async (t) => {
  const { key, id } = gw.createKey('open', 'ws-ok');
  const attempt = await connect(realtimeUrl('gpt-4o-realtime-preview'), { authorization: `Bearer ${key}` });
  if (!('opened' in attempt)) return t.fail(describeAttempt(attempt));
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
