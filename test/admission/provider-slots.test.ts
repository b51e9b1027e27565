import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, logIdOf, rowById, send } from './support.js';

// Issue 14, finding 4: a streamed body nested 20,000 arrays deep from a token-limited customer threw
// after the provider slot was taken and outside the code that gives it back; with max_in_flight 3,
// three such requests left every customer with 503 overloaded until restart.
// Finding 9 (second half): a 503 overloaded row said allowed = 1 although nothing was forwarded.

const POLICY = policy().catchAll().customer('limited', { tokens_per_minute: 1_000_000 }).customer('plain').customer('busy').yaml();

const harnesses: Harness[] = [];
const upstreams: MockUpstream[] = [];

test.after.always(async () => {
  for (const h of harnesses) await h.close();
  for (const u of upstreams) await u.close();
});

async function gatewayWithSlots(maxInFlight: number): Promise<{ gw: Harness; upstream: MockUpstream }> {
  const upstream = await startMockUpstream();
  upstreams.push(upstream);
  const gw = await startHarness(upstream.url, {
    policy: POLICY,
    providers: [{ name: 'openai', base_url: upstream.url, models: ['*'], api_key_env: 'OPENAI_API_KEY', max_in_flight: maxInFlight }],
  });
  harnesses.push(gw);
  return { gw, upstream };
}

const DEEP = '['.repeat(20_000) + ']'.repeat(20_000);
/** A streamed chat body that also names stream_options, so asking for usage means rewriting it. */
const DEEP_STREAM = `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}],"metadata_blob":${DEEP}}`;
const NORMAL = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

test('three streamed bodies nested 20,000 arrays deep are refused with 400 and leave no provider slot taken', async (t) => {
  const { gw, upstream } = await gatewayWithSlots(3);
  const limited = gw.createKey('limited');
  for (let i = 0; i < 3; i++) {
    const res = await send(gw.url, limited.key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: DEEP_STREAM });
    t.is(res.status, 400, `request ${i + 1}: ${res.body}`);
    t.is(errorOf(res)?.code, 'invalid_request');
  }
  t.is(upstream.received.length, 0, 'a deeply nested body reached the provider');

  // All three slots are free again: the same customer and another one are served.
  for (const customer of ['limited', 'plain']) {
    const { key } = gw.createKey(customer);
    const statuses = await Promise.all(
      [0, 1, 2].map(async () => (await send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: NORMAL })).status),
    );
    t.deepEqual(statuses, [200, 200, 200], `customer ${customer}`);
  }
});

test('a request refused with 503 overloaded is recorded as not allowed, with the reason overloaded', async (t) => {
  const { gw, upstream } = await gatewayWithSlots(1);
  const { key } = gw.createKey('busy');
  upstream.setDelay(600);
  const first = send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: NORMAL });
  // The first request holds the only slot while the mock delays its answer.
  await new Promise((resolve) => setTimeout(resolve, 150));
  const second = await send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: NORMAL });
  const firstRes = await first;
  t.is(firstRes.status, 200, firstRes.body);
  t.is(second.status, 503, second.body);
  t.is(errorOf(second)?.code, 'overloaded');
  const row = rowById(gw.dbPath, logIdOf(second));
  t.is(row?.allowed, 0, 'the overloaded request was recorded as allowed');
  t.regex(row?.reason ?? '', /^overloaded/);
  t.is(rowById(gw.dbPath, logIdOf(firstRes))?.allowed, 1);
  t.is(upstream.received.length, 1);
});
