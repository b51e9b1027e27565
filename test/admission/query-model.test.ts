import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { describeAttempt, errorOf, gatewayForFile, rowsOf, send, wsConnect } from './support.js';

// Issue 14, finding 3: with `model` given twice in the query the gateway judged the first value while
// Starlette serves the last. A model query parameter given more than once (names compared after
// percent-decoding, case-insensitively) is 400, on the WebSocket upgrade and on HTTP alike.

const POLICY = policy()
  .catchAll()
  .customer('rt-dup', { models: ['gpt-4o-mini-realtime-preview'] })
  .customer('rt-case', { models: ['gpt-4o-mini-realtime-preview'] })
  .customer('rt-pct', { models: ['gpt-4o-mini-realtime-preview'] })
  .customer('rt-ok', { models: ['gpt-4o-mini-realtime-preview'] })
  .customer('http-dup', { models: ['gpt-4o-mini'] })
  .customer('http-list', { models: ['gpt-4o-mini'] })
  .yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

const ALLOWED = 'gpt-4o-mini-realtime-preview';
const FORBIDDEN = 'gpt-4o-realtime-preview';

function wsUrl(query: string): string {
  return `${gw.url.replace(/^http/, 'ws')}/v1/realtime?${query}`;
}

const WS_CASES: [string, string, string][] = [
  ['rt-dup', 'the same name twice', `model=${ALLOWED}&model=${FORBIDDEN}`],
  ['rt-case', 'names differing in case', `model=${ALLOWED}&Model=${FORBIDDEN}`],
  ['rt-pct', 'a percent-encoded name', `model=${ALLOWED}&%6Dodel=${FORBIDDEN}`],
];

for (const [customer, what, query] of WS_CASES) {
  test(`a realtime WebSocket upgrade with the model query parameter repeated (${what}) is refused with 400 and never proxied`, async (t) => {
    const { key } = gw.createKey(customer);
    const tag = newTag();
    const attempt = await wsConnect(wsUrl(query), { authorization: `Bearer ${key}`, ...tag });
    if ('opened' in attempt) attempt.opened.terminate();
    t.true('refused' in attempt && attempt.refused.status === 400, describeAttempt(attempt));
    if ('refused' in attempt) t.is((JSON.parse(attempt.refused.body) as { error: { code: string } }).error.code, 'invalid_request');
    t.deepEqual(upstream.taggedWebSockets(tag), [], 'the handshake reached the provider');
    t.deepEqual(rowsOf(gw.dbPath, customer).map((r) => r.allowed), [0], 'one refusal row');
  });
}

test('a realtime WebSocket upgrade with the model given once is proxied, so the refusals are about the repetition', async (t) => {
  const { key } = gw.createKey('rt-ok');
  const tag = newTag();
  const attempt = await wsConnect(wsUrl(`model=${ALLOWED}`), { authorization: `Bearer ${key}`, ...tag });
  t.true('opened' in attempt, describeAttempt(attempt));
  if ('opened' in attempt) attempt.opened.terminate();
  t.is(upstream.taggedWebSockets(tag).length, 1);
});

test('an HTTP request with the model query parameter repeated is refused with 400 and never forwarded', async (t) => {
  const { key } = gw.createKey('http-dup');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions?model=gpt-4o-mini&model=gpt-4o',
    headers: { 'content-type': 'application/json', ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 400, res.body);
  t.is(errorOf(res)?.code, 'invalid_request');
  t.deepEqual(upstream.tagged(tag), []);
});

test('a GET with the model query parameter repeated is refused with 400 and never forwarded', async (t) => {
  const { key } = gw.createKey('http-list');
  const tag = newTag();
  const res = await send(gw.url, key, { method: 'GET', path: '/v1/models?model=gpt-4o-mini&MODEL=gpt-4o', headers: { ...tag } });
  t.is(res.status, 400, res.body);
  t.is(errorOf(res)?.code, 'invalid_request');
  t.deepEqual(upstream.tagged(tag), []);
});
