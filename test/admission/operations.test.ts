import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, send } from './support.js';

// Issue 14, findings 5 and 10: the operation was read from the path alone, so GET and DELETE of stored
// chat completions were judged as creating one, mixed-case segments and letters-only ids became
// operation names, and `/v1/check/` was proxied upstream.

const POLICY = policy()
  .catchAll()
  .customer('chat-only', { operations: ['chat.completions'] })
  .customer('reader')
  .customer('deny-ft', { operations: ['*'] })
  .rule({ id: 'no-fine-tuning', when: { operation: 'fine_tuning.*' }, action: 'block', reason: 'fine-tuning is not allowed' })
  .yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

test('GET /v1/chat/completions is recorded as chat.completions.list with meta.method GET', async (t) => {
  const { key } = gw.createKey('reader');
  const tag = newTag();
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/chat/completions?limit=10', headers: { ...tag } });
  t.is(res.status, 200, res.body);
  t.is(upstream.tagged(tag).length, 1);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.list', method: 'GET', allowed: 1 });
});

test('DELETE /v1/chat/completions/{id} is recorded as chat.completions.delete with meta.method DELETE', async (t) => {
  const { key } = gw.createKey('reader');
  const res = await send(gw.url, key, { method: 'DELETE', path: '/v1/chat/completions/chatcmpl-abc123' });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.delete', method: 'DELETE', allowed: 1 });
});

test('a customer allowed only chat.completions gets 403 on GET /v1/chat/completions (listing every stored completion)', async (t) => {
  const { key } = gw.createKey('chat-only');
  const tag = newTag();
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/chat/completions', headers: { ...tag } });
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), [], 'the listing reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.list', allowed: 0 });
});

test('a customer allowed only chat.completions gets 403 on DELETE /v1/chat/completions/{id}', async (t) => {
  const { key } = gw.createKey('chat-only');
  const tag = newTag();
  const res = await send(gw.url, key, { method: 'DELETE', path: '/v1/chat/completions/chatcmpl-abc123', headers: { ...tag } });
  t.is(res.status, 403, res.body);
  t.deepEqual(upstream.tagged(tag), []);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions.delete', allowed: 0 });
});

test('a customer allowed only chat.completions can still create chat completions', async (t) => {
  const { key } = gw.createKey('chat-only');
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions', method: 'POST', allowed: 1 });
});

test('a letters-only id (/v1/models/babbage) is an id: the operation is models.get', async (t) => {
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
  test(`${method} ${path} (a known route only when case is ignored) is 404 and never forwarded`, async (t) => {
    const { key } = gw.createKey('deny-ft');
    const tag = newTag();
    const res = await send(gw.url, key, { method, path, headers: { ...tag, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body } : {}) });
    t.is(res.status, 404, res.body);
    t.is(errorOf(res)?.code, 'route_not_found');
    t.deepEqual(upstream.tagged(tag), [], `${path} reached the provider`);
  });
}

test('the lower-case fine-tuning route is judged as fine_tuning.jobs and its deny rule applies', async (t) => {
  const { key } = gw.createKey('deny-ft');
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/fine_tuning/jobs' });
  t.is(res.status, 403, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'fine_tuning.jobs.list', allowed: 0 });
});

test('POST /v1/check/ (trailing slash) answers as the check endpoint and is never forwarded', async (t) => {
  const { key } = gw.createKey('reader');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/check/',
    headers: { 'content-type': 'application/json', ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', operation: 'chat.completions' }),
  });
  t.is(res.status, 200, res.body);
  t.deepEqual(upstream.tagged(tag), [], '/v1/check/ was proxied upstream');
  const answer = JSON.parse(res.body) as { allowed?: unknown; log_id?: unknown; risk_score?: unknown };
  t.is(answer.allowed, true);
  t.is(typeof answer.risk_score, 'number');
  t.is(answer.log_id, res.headers['x-governance-log-id']);
});

test('a trailing slash on a route is the same route: /v1/chat/completions/ is judged as chat.completions', async (t) => {
  const { key } = gw.createKey('chat-only');
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions/',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'chat.completions', allowed: 1 });
});
