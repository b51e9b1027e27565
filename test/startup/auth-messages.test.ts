import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';

let upstream: MockUpstream;
let gw: Harness;
let key: string;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
  key = gw.createKey('acme').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

async function refusal(authorization: string): Promise<{ status: number; code: string; message: string }> {
  const res = await fetch(`${gw.baseURL}/models`, { headers: { authorization } });
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, code: body.error.code, message: body.error.message };
}

test('a provider key sent to the gateway gets a 401 that says so, without echoing it', async (t) => {
  const providerKey = 'sk-proj-abcdefghijklmnopqrstuvwxyz0123456789';
  const r = await refusal(`Bearer ${providerKey}`);
  t.is(r.status, 401);
  t.is(r.code, 'invalid_api_key');
  t.regex(r.message, /this is a provider key \(sk-…\); send a gateway key gg_… from `govgate keys create`/);
  t.false(r.message.includes(providerKey));
  t.false(gw.logs.some((l) => l.includes(providerKey)), 'never logged');
});

test('"Bearer Bearer gg_…" gets a 401 saying Bearer is doubled, without echoing the key', async (t) => {
  const r = await refusal(`Bearer Bearer ${key}`);
  t.is(r.status, 401);
  t.regex(r.message, /says Bearer twice/);
  t.false(r.message.includes(key));
});

test('a well-formed key is still accepted and a mistyped one keeps the generic message', async (t) => {
  const ok = await fetch(`${gw.baseURL}/models`, { headers: { authorization: `Bearer ${key}` } });
  await ok.arrayBuffer();
  t.is(ok.status, 200);
  const r = await refusal('Bearer gg_typo');
  t.is(r.message, 'Invalid API key: the key is malformed, unknown or revoked');
});
