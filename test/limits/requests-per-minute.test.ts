import { writeFileSync } from 'node:fs';
import test from 'ava';
import OpenAI from 'openai';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { decisionRow, logIdOf } from '../proxy/support.js';
import { policy } from '../helpers/policy-builder.js';
import { burst, chat, countOf, refusalRows } from './support.js';

let upstream: MockUpstream;
let gw: Harness;

/** A customer per test, so that no test's requests count against another's minute; rpm-keys' key limit needs a key made first. */
function rpmPolicy(limitedKeyId: string | null): string {
  return policy()
    .catchAll()
    .customer('rpm-acme', { requests_per_minute: 5 })
    .customer('rpm-sdk', { requests_per_minute: 2 })
    .customer('rpm-client', { requests_per_minute: 2 })
    .customer('rpm-keys', { requests_per_minute: 100, ...(limitedKeyId === null ? {} : { keys: { [limitedKeyId]: { requests_per_minute: 3 } } }) })
    .customer('rpm-audit', { requests_per_minute: 1 })
    .customer('rpm-metrics', { requests_per_minute: 1 })
    .yaml();
}

const POLICY = rpmPolicy(null);

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

// Serial: the delay that keeps the burst in flight is the shared upstream's, for every request.
test.serial('a limit of N requests per minute lets exactly N through a concurrent burst', async (t) => {
  const { key } = gw.createKey('rpm-acme');
  upstream.setDelay(50);
  t.teardown(() => upstream.setDelay(0));
  const tag = newTag();
  const statuses = await burst([gw.url], key, 30, undefined, tag);
  t.is(countOf(statuses, 200), 5);
  t.is(countOf(statuses, 429), 25);
  t.is(upstream.tagged(tag).length, 5, 'refused requests are not forwarded');
});

test('the refusal is 429 rate_limit_exceeded in the OpenAI shape with Retry-After and x-ratelimit headers', async (t) => {
  const { key } = gw.createKey('rpm-sdk');
  const first = await chat(gw.url, key);
  t.is(first.status, 200);
  t.is(first.headers.get('x-ratelimit-limit-requests'), '2');
  t.is(first.headers.get('x-ratelimit-remaining-requests'), '1');
  t.regex(first.headers.get('x-ratelimit-reset-requests') ?? '', /^(\d+m)?\d+(\.\d+)?s$/);
  t.is(first.headers.get('x-ratelimit-limit-tokens'), null, 'no token limit applies');
  await first.arrayBuffer();
  t.is((await chat(gw.url, key)).status, 200);

  const refused = await chat(gw.url, key);
  t.is(refused.status, 429);
  const body = (await refused.json()) as { error: { code: string; type: string; message: string; param: null } };
  t.is(body.error.code, 'rate_limit_exceeded');
  t.is(body.error.type, 'requests');
  t.regex(body.error.message, /^Rate limit reached for customer rpm-[a-z]+ on requests per minute: 2 requests in the last minute already use the limit of 2; one frees in \d+s\.$/);
  t.is(refused.headers.get('x-ratelimit-remaining-requests'), '0');
  const retryAfter = Number(refused.headers.get('retry-after'));
  t.true(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 120, `Retry-After ${retryAfter}`);
  t.is(refused.headers.get('x-governance-decision'), 'block');
});

test('the OpenAI SDK raises RateLimitError (maxRetries 0) with the code and headers', async (t) => {
  const { key } = gw.createKey('rpm-client');
  const client = gw.sdk(key);
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }] });
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }] });
  const err = await t.throwsAsync(
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }] }),
    { instanceOf: OpenAI.RateLimitError },
  );
  t.is(err?.status, 429);
  t.is(err?.code, 'rate_limit_exceeded');
  t.is(err?.type, 'requests');
  t.truthy(err?.headers?.get('retry-after'));
  t.is(err?.headers?.get('x-ratelimit-limit-requests'), '2');
});

test('the refusal is an audit row, allowed 0, with the limit named in reason', async (t) => {
  const { key } = gw.createKey('rpm-audit');
  t.is((await chat(gw.url, key)).status, 200);
  const refused = await chat(gw.url, key);
  t.is(refused.status, 429);
  const row = decisionRow(gw.dbPath, logIdOf(refused.headers));
  t.is(row?.allowed, 0);
  t.is(row?.reason, 'limit requests_per_minute: customer rpm-audit 1/min');
  t.deepEqual(refusalRows(gw.dbPath, 'rpm-audit'), [{ allowed: 0, reason: 'limit requests_per_minute: customer rpm-audit 1/min' }]);
});

// Serial: it changes the policy every other test runs under.
test.serial('a key limit applies on top of its customer’s; other keys of the customer keep the customer limit', async (t) => {
  const limited = gw.createKey('rpm-keys');
  const other = gw.createKey('rpm-keys');
  writeFileSync(gw.policyFile, rpmPolicy(limited.id));
  gw.gateway.context.policy.reload();
  t.teardown(() => {
    writeFileSync(gw.policyFile, POLICY);
    gw.gateway.context.policy.reload();
  });

  const statuses = await burst([gw.url], limited.key, 8);
  t.is(countOf(statuses, 200), 3);
  const refused = await chat(gw.url, limited.key);
  t.is(refused.status, 429);
  t.is(decisionRow(gw.dbPath, logIdOf(refused.headers))?.reason, `limit requests_per_minute: key ${limited.id} 3/min`);
  t.is(refused.headers.get('x-ratelimit-limit-requests'), '3');

  const fine = await burst([gw.url], other.key, 8);
  t.is(countOf(fine, 200), 8);
});

test('/metrics counts refusals by limit kind', async (t) => {
  const refusals = async () => {
    const m = /govgate_limit_refusals_total\{limit="requests_per_minute"\} (\d+)/.exec(await (await fetch(`${gw.url}/metrics`)).text());
    return m ? Number(m[1]) : 0;
  };
  const before = await refusals();
  const { key } = gw.createKey('rpm-metrics');
  t.deepEqual((await burst([gw.url], key, 3)).sort(), [200, 429, 429]);
  // Other tests refuse requests meanwhile, so the counter has grown by at least this test's two.
  t.true((await refusals()) >= before + 2);
});

test('customers without limits get no rate limit headers', async (t) => {
  const { key } = gw.createKey('unlimited');
  const res = await chat(gw.url, key);
  t.is(res.status, 200);
  t.is(res.headers.get('x-ratelimit-limit-requests'), null);
  t.is(res.headers.get('retry-after'), null);
});
