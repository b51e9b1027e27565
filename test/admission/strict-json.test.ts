import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, send } from './support.js';

// Issue 14, finding 10: duplicate JSON keys were accepted (JSON.parse keeps the last, a first-wins
// provider serves the first), although ambiguous bodies are to be refused. Duplicates at any depth,
// also when one of them is written with escapes, are 400 and never forwarded.

const POLICY = policy().catchAll().customer('acme', { models: ['gpt-4o-mini'] }).yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

async function refusedAs400(t: import('ava').ExecutionContext, body: string): Promise<void> {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', ...tag }, body });
  t.is(res.status, 400, res.body);
  t.is(errorOf(res)?.code, 'invalid_request');
  t.deepEqual(upstream.tagged(tag), [], 'the ambiguous body reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { customer_id: 'acme', allowed: 0 });
}

test('a duplicate top-level model key is refused with 400, whichever of the two is allowed', async (t) => {
  // The last one (what JSON.parse keeps) is the allowed model; a first-wins provider would serve gpt-4o.
  await refusedAs400(t, '{"model":"gpt-4o","model":"gpt-4o-mini","messages":[]}');
});

test('a duplicate key nested inside the body is refused with 400', async (t) => {
  await refusedAs400(t, '{"model":"gpt-4o-mini","messages":[{"role":"user","role":"system","content":"hi"}]}');
});

test('a key written with escapes (mod\\u0065l) is the same key and the duplicate is refused with 400', async (t) => {
  await refusedAs400(t, '{"model":"gpt-4o-mini","mod\\u0065l":"gpt-4o","messages":[]}');
  await refusedAs400(t, '{"mod\\u0065l":"gpt-4o","model":"gpt-4o-mini","messages":[]}');
});

test('the same body without duplicates goes through, so the refusals above are about the duplicates', async (t) => {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json', ...tag },
    body: '{"mod\\u0065l":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
  });
  t.is(res.status, 200, res.body);
  t.is(upstream.tagged(tag).length, 1);
  t.like(rowById(gw.dbPath, logIdOf(res)), { model: 'gpt-4o-mini', allowed: 1 });
});
