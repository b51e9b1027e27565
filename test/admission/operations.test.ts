import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import type { MockUpstream } from '../helpers/mock-upstream.js';
import { errorOf, gatewayForFile, logIdOf, policyWith, rowById, send } from './support.js';

// Issue 14, findings 5 and 10: the operation was read from the path alone, so GET and DELETE of stored
// chat completions were judged as creating one, mixed-case segments and letters-only ids became
// operation names, and `/v1/check/` was proxied upstream.

const POLICY = policyWith(`  chat-only:
    operations: [chat.completions]
  reader: {}
  deny-ft:
    operations: ["*"]
`, `
  - id: no-fine-tuning
    when:
      operation: "fine_tuning.*"
    action: block
    reason: fine-tuning is not allowed`);

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

test.serial('GET /v1/chat/completions is recorded as chat.completions.list with meta.method GET', async (t) => {
  const { key } = gw.createKey('reader');
  const before = upstream.received.length;
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/chat/completions?limit=10' });
  t.is(res.status, 200, res.body);
  t.is(upstream.received.length, before + 1);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.list', method: 'GET', allowed: 1 });
});

test.serial('DELETE /v1/chat/completions/{id} is recorded as chat.completions.delete with meta.method DELETE', async (t) => {
  const { key } = gw.createKey('reader');
  const res = await send(gw.url, key, { method: 'DELETE', path: '/v1/chat/completions/chatcmpl-abc123' });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.delete', method: 'DELETE', allowed: 1 });
});

test.serial('a customer allowed only chat.completions gets 403 on GET /v1/chat/completions (listing every stored completion)', async (t) => {
  const { key } = gw.createKey('chat-only');
  const before = upstream.received.length;
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/chat/completions' });
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.is(upstream.received.length, before, 'the listing reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.list', allowed: 0 });
});

test.serial('a customer allowed only chat.completions gets 403 on DELETE /v1/chat/completions/{id}', async (t) => {
  const { key } = gw.createKey('chat-only');
  const before = upstream.received.length;
  const res = await send(gw.url, key, { method: 'DELETE', path: '/v1/chat/completions/chatcmpl-abc123' });
  t.is(res.status, 403, res.body);
  t.is(upstream.received.length, before);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.delete', allowed: 0 });
});

test.serial('a customer allowed only chat.completions can still create chat completions', async (t) => {
  const { key } = gw.createKey('chat-only');
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions', method: 'POST', allowed: 1 });
});

test.serial('a letters-only id (/v1/models/babbage) is an id: the operation is models.get', async (t) => {
  const { key } = gw.createKey('reader');
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/models/babbage' });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'models.get', method: 'GET' });
  const list = await send(gw.url, key, { method: 'GET', path: '/v1/models' });
  t.is(list.status, 200, list.body);
  t.like(rowById(gw.dbPath, logIdOf(list)), { operation: 'models.list' });
});

const MIXED_CASE: [string, string, string | undefined][] = [
  ['GET', '/v1/Fine_tuning/jobs', undefined],
  ['POST', '/v1/Fine_tuning/jobs', JSON.stringify({ model: 'gpt-4o-mini', training_file: 'file-abc' })],
  ['POST', '/v1/Chat/Completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [] })],
  ['POST', '/v1/chat/Completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [] })],
];

for (const [method, path, body] of MIXED_CASE) {
  test.serial(`${method} ${path} (a known route only when case is ignored) is 404 and never forwarded`, async (t) => {
    const { key } = gw.createKey('deny-ft');
    const before = upstream.received.length;
    const res = await send(gw.url, key, { method, path, ...(body ? { body, headers: { 'content-type': 'application/json' } } : {}) });
    t.is(res.status, 404, res.body);
    t.is(errorOf(res)?.code, 'route_not_found');
    t.is(upstream.received.length, before, `${path} reached the provider`);
  });
}

test.serial('the lower-case fine-tuning route is judged as fine_tuning.jobs and its deny rule applies', async (t) => {
  const { key } = gw.createKey('deny-ft');
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/fine_tuning/jobs' });
  t.is(res.status, 403, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'fine_tuning.jobs.list', allowed: 0 });
});

test.serial('POST /v1/check/ (trailing slash) answers as the check endpoint and is never forwarded', async (t) => {
  const { key } = gw.createKey('reader');
  const before = upstream.received.length;
  const res = await send(gw.url, key, {
    path: '/v1/check/',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', operation: 'chat.completions' }),
  });
  t.is(res.status, 200, res.body);
  t.is(upstream.received.length, before, '/v1/check/ was proxied upstream');
  const answer = JSON.parse(res.body) as { allowed?: unknown; log_id?: unknown; risk_score?: unknown };
  t.is(answer.allowed, true);
  t.is(typeof answer.risk_score, 'number');
  t.is(answer.log_id, res.headers['x-governance-log-id']);
});

test.serial('a trailing slash on a route is the same route: /v1/chat/completions/ is judged as chat.completions', async (t) => {
  const { key } = gw.createKey('chat-only');
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions/',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions', allowed: 1 });
});
