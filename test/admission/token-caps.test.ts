import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, send } from './support.js';

// Issue 14, finding 10: a customer's max_tokens cap ignored `n`, so n choices of max_tokens each passed
// a cap meant for one. For chat.completions and completions the judged max_tokens is the cap times n.

const POLICY = policy().catchAll().customer('capped', { max_tokens: 2048 }).yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

function post(key: string, path: string, body: unknown, tag: Tag = newTag()) {
  return send(gw.url, key, { path, headers: { 'content-type': 'application/json', ...tag }, body: JSON.stringify(body) });
}

for (const [path, base] of [
  ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }],
  ['/v1/completions', { model: 'gpt-3.5-turbo-instruct', prompt: 'hi' }],
] as const) {
  test(`${path}: max_tokens 2048 with n 2 is blocked for a customer capped at 2048`, async (t) => {
    const { key } = gw.createKey('capped');
    const tag = newTag();
    const res = await post(key, path, { ...base, max_tokens: 2048, n: 2 }, tag);
    t.is(res.status, 403, res.body);
    t.is(errorOf(res)?.code, 'policy_blocked');
    t.regex(errorOf(res)?.message ?? '', /max_tokens/);
    t.deepEqual(upstream.tagged(tag), []);
    t.like(rowById(gw.dbPath, logIdOf(res)), { allowed: 0 });
  });

  test(`${path}: max_tokens 2048 with n 1 (or no n) is allowed for a customer capped at 2048`, async (t) => {
    const { key } = gw.createKey('capped');
    for (const extra of [{ n: 1 }, {}]) {
      const res = await post(key, path, { ...base, max_tokens: 2048, ...extra });
      t.is(res.status, 200, res.body);
    }
  });
}

test('max_completion_tokens 1024 with n 3 is judged as 3072 and blocked for a customer capped at 2048', async (t) => {
  const { key } = gw.createKey('capped');
  const res = await post(key, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [], max_completion_tokens: 1024, n: 3 });
  t.is(res.status, 403, res.body);
  t.regex(errorOf(res)?.message ?? '', /3072/);
});

for (const n of [0, -1, 1.5, '2']) {
  test(`an n of ${JSON.stringify(n)} is refused with 400 (param n)`, async (t) => {
    const { key } = gw.createKey('capped');
    const tag = newTag();
    const res = await post(key, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [], max_tokens: 10, n }, tag);
    t.is(res.status, 400, res.body);
    t.is(errorOf(res)?.param, 'n');
    t.deepEqual(upstream.tagged(tag), []);
  });
}
