import test from 'ava';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { decisionRow, logIdOf, waitFor } from '../proxy/support.js';
import { policy } from '../helpers/policy-builder.js';
import { burst, CHAT_RESERVATION, chat, countOf } from './support.js';

/** The mock's non-streamed chat completion reports this many tokens. */
const MOCK_TOTAL = 18;

let upstream: MockUpstream;
let gw: Harness;

/** A customer per test, so that no test's usage counts against another's budget. */
const POLICY = policy()
  .catchAll()
  .customer('daily', { tokens_per_day: 100 })
  .customer('burst', { tokens_per_minute: 100 })
  .customer('over', { tokens_per_minute: 100 })
  .customer('failing', { tokens_per_month: 2 * CHAT_RESERVATION })
  .customer('sdk', { tokens_per_minute: 50 })
  .customer('oversized', { tokens_per_minute: 50 })
  .customer('default-reservation', { tokens_per_day: 1000 })
  .yaml();

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY, limits: { default_token_reservation: 500 } });
  // The first request loads the proxy's modules; a burst that paid for that would outlast the upstream's delay, and its first answers would free reservations for late requests.
  await (await chat(gw.url, gw.createKey('warm-up').key)).arrayBuffer();
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

/** Outcome rows (and so settlement) land after the response ends; this waits until all `n` are in. */
async function settled(customer: string, n: number): Promise<number> {
  const sum = await waitFor(() => {
    const [row] = sqliteJson<{ n: number; tokens: number | null }>(
      gw.dbPath,
      `SELECT COUNT(*) AS n, SUM(o.total_tokens) AS tokens FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id WHERE u.customer_id = '${customer}'`,
    );
    return row && row.n === n ? (row.tokens ?? 0) : undefined;
  }, 3000);
  if (sum === undefined) throw new Error(`outcomes of ${customer} did not arrive`);
  return sum;
}

test('a daily budget reserves max_tokens plus the prompt estimate, then settles to the reported usage', async (t) => {
  const { key } = gw.createKey('daily');
  const first = await chat(gw.url, key);
  t.is(first.status, 200);
  t.is(first.headers.get('x-ratelimit-limit-tokens'), '100');
  t.is(first.headers.get('x-ratelimit-remaining-tokens'), String(100 - CHAT_RESERVATION), 'the reservation is held');
  await first.arrayBuffer();
  await settled('daily', 1);

  const second = await chat(gw.url, key);
  t.is(second.headers.get('x-ratelimit-remaining-tokens'), String(100 - MOCK_TOTAL - CHAT_RESERVATION), 'the first request counts what it used, not what it reserved');
  await second.arrayBuffer();
  await settled('daily', 2);

  // Admitted while used + reservation fits: 2·18 + 29 = 65, 3·18 + 29 = 83, then 4·18 + 29 = 101 > 100.
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await chat(gw.url, key);
    statuses.push(res.status);
    if (res.status === 429) {
      const body = (await res.json()) as { error: { code: string; type: string } };
      t.is(body.error.code, 'budget_exceeded');
      t.is(body.error.type, 'tokens');
      t.is(decisionRow(gw.dbPath, logIdOf(res.headers))?.reason, 'limit tokens_per_day: customer daily 100/day');
      const retryAfter = Number(res.headers.get('retry-after'));
      t.true(retryAfter >= 1 && retryAfter <= 86_400, 'until the UTC day ends');
    } else {
      await res.arrayBuffer();
      await settled('daily', 2 + statuses.length);
    }
  }
  t.deepEqual(statuses, [200, 200, 429]);
  t.true((await settled('daily', 4)) <= 100, 'the budget was not overshot');

  const models = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  t.is(models.status, 200, 'a request without a body reserves no tokens, so a nearly spent budget still lists models');
  t.is(models.headers.get('x-ratelimit-remaining-tokens'), String(100 - 4 * MOCK_TOTAL));
});

// Serial, like the two after it: the upstream's delay and answers are set for every request it gets.
test.serial('a concurrent burst cannot overshoot: only as many requests as reservations fit are admitted', async (t) => {
  const { key } = gw.createKey('burst');
  upstream.setDelay(300);
  t.teardown(() => upstream.reset());
  const statuses = await burst([gw.url], key, 12);
  t.is(countOf(statuses, 200), Math.floor(100 / CHAT_RESERVATION));
  t.true((await settled('burst', countOf(statuses, 200))) <= 100);
});

test.serial('usage above the reservation is settled upward: the counter holds what was really used', async (t) => {
  const { key } = gw.createKey('over');
  t.teardown(() => upstream.reset());
  upstream.setDelay(300);
  upstream.setStatus('/v1/chat/completions', 200, {
    id: 'chatcmpl-big', object: 'chat.completion', created: 0, model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: 'x' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 40, completion_tokens: 10, total_tokens: 50 },
  });
  const statuses = await burst([gw.url], key, 12);
  const admitted = countOf(statuses, 200);
  t.is(admitted, Math.floor(100 / CHAT_RESERVATION));
  const used = await settled('over', admitted);
  t.is(used, 50 * admitted);
  t.true(used - 100 <= admitted * CHAT_RESERVATION, 'the overshoot is bounded by the in-flight reservations');
  upstream.reset();
  const after = await chat(gw.url, key);
  t.is(after.status, 429, 'the settled usage is over the limit');
  t.is(after.headers.get('x-ratelimit-remaining-tokens'), '0');
});

test.serial('a failed request releases its reservation', async (t) => {
  const { key } = gw.createKey('failing');
  t.teardown(() => upstream.reset());
  upstream.setStatus('/v1/chat/completions', 500, { error: { message: 'boom', type: 'server_error', param: null, code: null } });
  for (let i = 0; i < 5; i++) {
    const res = await chat(gw.url, key);
    t.is(res.status, 500, 'forwarded each time: nothing stays reserved');
    await res.arrayBuffer();
    await settled('failing', i + 1);
  }
  upstream.reset();
  t.is((await chat(gw.url, key)).status, 200);
});

test('a token rate limit is rate_limit_exceeded of type tokens, and the SDK raises RateLimitError', async (t) => {
  const { key } = gw.createKey('sdk');
  const client = gw.sdk(key);
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }], max_tokens: 10 });
  await settled('sdk', 1);
  const err = await t.throwsAsync(
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }], max_tokens: 30 }),
    { instanceOf: OpenAI.RateLimitError },
  );
  t.is(err?.code, 'rate_limit_exceeded');
  t.is(err?.type, 'tokens');
  t.is(err?.headers?.get('x-ratelimit-limit-tokens'), '50');
});

test('without max_tokens the configured default_token_reservation is held', async (t) => {
  const { key } = gw.createKey('default-reservation');
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  const res = await chat(gw.url, key, body);
  t.is(res.status, 200);
  t.is(res.headers.get('x-ratelimit-remaining-tokens'), String(1000 - 500 - Math.ceil(Buffer.byteLength(body) / 4)));
});

test('a request whose reservation alone is over the limit says so', async (t) => {
  const { key } = gw.createKey('oversized');
  const res = await chat(gw.url, key, JSON.stringify({ model: 'gpt-4o-mini', messages: [], max_tokens: 5000 }));
  t.is(res.status, 429);
  const body = (await res.json()) as { error: { message: string } };
  t.regex(body.error.message, /lower max_tokens/);
});
