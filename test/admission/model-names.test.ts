import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, send } from './support.js';

// Issue 14, finding 10: `"gpt-4o "` and `"gpt-4o\u0000"` did not match a rule about gpt-4o, so they
// passed it, and a provider that trims or cuts at NUL served gpt-4o (a raw NUL also landed in
// /metrics). A model name is 1..256 printable ASCII characters without spaces; anything else is 400.

const POLICY = policy().catchAll().rule({ id: 'no-gpt-4o', when: { model: 'gpt-4o' }, action: 'block', reason: 'gpt-4o is reserved' }).yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

async function chat(model: string): Promise<{ status: number; code: string | undefined; param: string | null | undefined; forwarded: boolean; body: string }> {
  const { key } = gw.createKey('names');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json', ...tag },
    body: JSON.stringify({ model, messages: [] }),
  });
  const error = errorOf(res);
  return { status: res.status, code: error?.code, param: error?.param, forwarded: upstream.tagged(tag).length > 0, body: res.body };
}

const BAD_NAMES: [string, string][] = [
  ['a trailing space', 'gpt-4o '],
  ['a leading space', ' gpt-4o'],
  ['a NUL character', 'gpt-4o\u0000'],
  ['a tab', 'gpt-4o\t'],
  ['a newline', 'gpt-4o\n'],
  ['a non-ASCII hyphen', 'gpt\u20114o'],
];

for (const [what, model] of BAD_NAMES) {
  test(`a model name with ${what} is refused with 400 (param model) and never forwarded`, async (t) => {
    const r = await chat(model);
    t.is(r.status, 400, r.body);
    t.is(r.code, 'invalid_request');
    t.is(r.param, 'model');
    t.false(r.forwarded);
  });
}

test('a NUL in a model name never reaches /metrics', async (t) => {
  await chat('gpt-4o\u0000');
  await chat('gpt-4o\u0000x');
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  t.false(text.includes('\u0000'), 'a raw NUL byte is in the Prometheus text');
});

test('the exact name is still judged by the rule, so the refusals above are about the characters', async (t) => {
  const blocked = await chat('gpt-4o');
  t.is(blocked.status, 403, blocked.body);
  t.is(blocked.code, 'policy_blocked');
  t.false(blocked.forwarded);
  const allowed = await chat('gpt-4o-mini');
  t.is(allowed.status, 200, allowed.body);
  t.true(allowed.forwarded);
});
