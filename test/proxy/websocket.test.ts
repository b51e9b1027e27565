import type { IncomingMessage } from 'node:http';
import test from 'ava';
import WebSocket from 'ws';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

const POLICY = `
version: 1
mode: enforce
block_threshold: 70
customers:
  "*":
    models: ["*"]
    operations: ["*"]
  acme:
    models: ["gpt-4o-realtime-preview"]
`;

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY });
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
    ws.once('error', (err) => resolve({ failed: err }));
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

test.serial('an allowed realtime WebSocket is proxied with the provider key', async (t) => {
  const { key } = gw.createKey('acme');
  const attempt = await connect(realtimeUrl('gpt-4o-realtime-preview'), {
    authorization: `Bearer ${key}`,
    cookie: 'session=abc',
    'x-governance-metadata': JSON.stringify({ team: 'voice' }),
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

  const seen = upstream.wsReceived.at(-1)!;
  t.is(seen.path, '/v1/realtime?model=gpt-4o-realtime-preview');
  t.is(seen.headers.authorization, `Bearer ${UPSTREAM_SECRET}`);
  t.false(JSON.stringify(seen.headers).includes(key), 'the client key reached the provider');
  t.is(seen.headers.cookie, undefined);
  t.deepEqual(Object.keys(seen.headers).filter((h) => h.startsWith('x-governance-')), []);
  t.deepEqual(seen.messages, ['{"type":"session.update"}']);
});

test.serial('a WebSocket upgrade without a key is refused with 401', async (t) => {
  const before = upstream.wsReceived.length;
  const attempt = await connect(realtimeUrl('gpt-4o-realtime-preview'), {});
  if (!('refused' in attempt)) {
    t.fail('the upgrade was not refused with an HTTP response');
    return;
  }
  t.is(attempt.refused.statusCode, 401);
  t.is((JSON.parse(attempt.refused.body) as { error: { code: string } }).error.code, 'invalid_api_key');
  t.is(upstream.wsReceived.length, before);
});

test.serial('a WebSocket upgrade for a model the customer may not use is refused with 403', async (t) => {
  const { key } = gw.createKey('acme');
  const before = upstream.wsReceived.length;
  const attempt = await connect(realtimeUrl('gpt-4o-mini-realtime-preview'), { authorization: `Bearer ${key}` });
  if (!('refused' in attempt)) {
    t.fail('the upgrade was not refused with an HTTP response');
    return;
  }
  t.is(attempt.refused.statusCode, 403);
  t.is((JSON.parse(attempt.refused.body) as { error: { code: string } }).error.code, 'policy_blocked');
  t.is(upstream.wsReceived.length, before);
});

test.serial('every WebSocket decision has an audit row', async (t) => {
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
