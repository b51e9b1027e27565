import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import type { MockUpstream } from '../helpers/mock-upstream.js';
import { errorOf, gatewayForFile, logIdOf, policyWith, rowById, send } from './support.js';

// Issue 14, finding 10: a customer's max_tokens cap ignored `n`, so n choices of max_tokens each passed
// a cap meant for one. For chat.completions and completions the judged max_tokens is the cap times n.

const POLICY = policyWith(`  capped:
    max_tokens: 2048
`);

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

function post(key: string, path: string, body: unknown) {
  return send(gw.url, key, { path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

for (const [path, base] of [
  ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }],
  ['/v1/completions', { model: 'gpt-3.5-turbo-instruct', prompt: 'hi' }],
] as const) {
  test.serial(`${path}: max_tokens 2048 with n 2 is blocked for a customer capped at 2048`, async (t) => {
    const { key } = gw.createKey('capped');
    const before = upstream.received.length;
    const res = await post(key, path, { ...base, max_tokens: 2048, n: 2 });
    t.is(res.status, 403, res.body);
    t.is(errorOf(res)?.code, 'policy_blocked');
    t.regex(errorOf(res)?.message ?? '', /max_tokens/);
    t.is(upstream.received.length, before);
    t.like(rowById(gw.dbPath, logIdOf(res)), { allowed: 0 });
  });

  test.serial(`${path}: max_tokens 2048 with n 1 (or no n) is allowed for a customer capped at 2048`, async (t) => {
    const { key } = gw.createKey('capped');
    for (const extra of [{ n: 1 }, {}]) {
      const res = await post(key, path, { ...base, max_tokens: 2048, ...extra });
      t.is(res.status, 200, res.body);
    }
  });
}

test.serial('max_completion_tokens 1024 with n 3 is judged as 3072 and blocked for a customer capped at 2048', async (t) => {
  const { key } = gw.createKey('capped');
  const res = await post(key, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [], max_completion_tokens: 1024, n: 3 });
  t.is(res.status, 403, res.body);
  t.regex(errorOf(res)?.message ?? '', /3072/);
});

for (const n of [0, -1, 1.5, '2']) {
  test.serial(`an n of ${JSON.stringify(n)} is refused with 400 (param n)`, async (t) => {
    const { key } = gw.createKey('capped');
    const before = upstream.received.length;
    const res = await post(key, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [], max_tokens: 10, n });
    t.is(res.status, 400, res.body);
    t.is(errorOf(res)?.param, 'n');
    t.is(upstream.received.length, before);
  });
}
