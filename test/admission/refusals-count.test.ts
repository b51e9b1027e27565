import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, rowsOf, send, type RawResponse } from './support.js';

// Issue 14, finding 9: blocked requests and /v1/check calls did not count against requests_per_minute,
// so a key could write audit rows as fast as the machine allowed. Every authenticated request a key
// makes counts; refusals are counted, not refused by the limit, and a forwarded request over it is 429.

/** One customer per test, so each test's minute is its own. */
const LIMITED = { models: ['gpt-4o-mini'], requests_per_minute: 3 };
const POLICY = policy()
  .catchAll()
  .customer('rpm-blocked', LIMITED)
  .customer('rpm-check', LIMITED)
  .customer('rpm-unreadable', LIMITED)
  .customer('rpm-control', LIMITED)
  .yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

function chat(key: string, body: string, tag: Tag = newTag()): Promise<RawResponse> {
  return send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', ...tag }, body });
}

const ALLOWED = JSON.stringify({ model: 'gpt-4o-mini', messages: [] });
const FORBIDDEN = JSON.stringify({ model: 'gpt-4o', messages: [] });

async function thenAllowedIs429(t: import('ava').ExecutionContext, key: string, customer: string, refusals: number): Promise<void> {
  const tag = newTag();
  const res = await chat(key, ALLOWED, tag);
  t.is(res.status, 429, res.body);
  t.is(errorOf(res)?.code, 'rate_limit_exceeded');
  t.deepEqual(upstream.tagged(tag), [], 'the request over the limit was forwarded');
  t.like(rowById(gw.dbPath, logIdOf(res)), { allowed: 0 });
  t.is(rowsOf(gw.dbPath, customer).length, refusals + 1, 'one row per request');
}

test('with a limit of 3/min, three policy-blocked requests then an allowed one: the allowed one gets 429', async (t) => {
  const { key } = gw.createKey('rpm-blocked');
  for (let i = 0; i < 3; i++) {
    const res = await chat(key, FORBIDDEN);
    t.is(res.status, 403, res.body);
    t.is(errorOf(res)?.code, 'policy_blocked', 'a refusal is counted, not refused by the limit');
  }
  await thenAllowedIs429(t, key, 'rpm-blocked', 3);
});

test('with a limit of 3/min, three /v1/check calls then an allowed request: the request gets 429', async (t) => {
  const { key } = gw.createKey('rpm-check');
  for (let i = 0; i < 3; i++) {
    const res = await send(gw.url, key, { path: '/v1/check', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', operation: 'chat.completions' }) });
    t.is(res.status, 200, res.body);
  }
  await thenAllowedIs429(t, key, 'rpm-check', 3);
});

test('with a limit of 3/min, three unreadable requests then an allowed one: the allowed one gets 429', async (t) => {
  const { key } = gw.createKey('rpm-unreadable');
  for (let i = 0; i < 3; i++) {
    const res = await chat(key, '{"model":"gpt-4o-mini",');
    t.is(res.status, 400, res.body);
  }
  await thenAllowedIs429(t, key, 'rpm-unreadable', 3);
});

test('with a limit of 3/min, three allowed requests go through and the fourth gets 429 (as before)', async (t) => {
  const { key } = gw.createKey('rpm-control');
  for (let i = 0; i < 3; i++) t.is((await chat(key, ALLOWED)).status, 200);
  await thenAllowedIs429(t, key, 'rpm-control', 3);
});
