import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { WriteLock } from '../helpers/write-lock.js';

let upstream: MockUpstream;
const harnesses: Harness[] = [];
const locks: WriteLock[] = [];

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  for (const lock of locks) lock.kill();
  for (const h of harnesses) await h.close();
  await upstream?.close();
});

/**
 * A gateway of the test's own: its metrics count only what the test did, and
 * a policy edit, a label flood or a locked database stays the test's business.
 */
async function gateway(): Promise<{ gw: Harness; key: string }> {
  const gw = await startHarness(upstream.url);
  harnesses.push(gw);
  return { gw, key: gw.createKey('acme').key };
}

async function chat(gw: Harness, key: string, model: string, metadata?: Record<string, unknown>): Promise<number> {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(metadata ? { 'x-governance-metadata': JSON.stringify(metadata) } : {}),
    },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.arrayBuffer();
  return res.status;
}

async function metrics(gw: Harness): Promise<string> {
  const res = await fetch(`${gw.url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** The value of one sample line, e.g. `govgate_requests_total{…}` → 3. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

test('/metrics counts requests by decision, operation, model, customer and status', async (t) => {
  const { gw, key } = await gateway();
  t.is(await chat(gw, key, 'gpt-4o-mini'), 200);
  t.is(await chat(gw, key, 'gpt-4o-mini', { data_classification: 'restricted' }), 403);
  await fetch(`${gw.baseURL}/models`).then((r) => r.arrayBuffer());

  const text = await metrics(gw);
  const common = { operation: 'chat.completions', model: 'gpt-4o-mini', customer: 'acme' };
  t.is(sample(text, 'govgate_requests_total', { ...common, decision: 'allow', status: '200' }), 1);
  t.is(sample(text, 'govgate_requests_total', { ...common, decision: 'block', status: '403' }), 1);
  t.is(sample(text, 'govgate_auth_failures_total', { failure: 'missing' }), 1);
  t.is(sample(text, 'govgate_overhead_seconds_count'), 1, 'one forwarded request, one overhead sample');
  t.is(sample(text, 'govgate_upstream_seconds_count', { provider: 'openai' }), 1);
  t.true((sample(text, 'govgate_audit_commit_seconds_count') ?? 0) >= 1);
  t.not(sample(text, 'govgate_audit_queue_depth'), undefined);
  t.not(sample(text, 'govgate_process_resident_memory_bytes'), undefined, 'process metrics are exported');
});

test('/metrics shows the policy in force by hash and counts reloads and rejected edits', async (t) => {
  const { gw } = await gateway();
  const hashOf = () => createHash('sha256').update(readFileSync(gw.policyFile)).digest('hex');
  t.is(sample(await metrics(gw), 'govgate_policy_info', { hash: hashOf() }), 1);

  writeFileSync(gw.policyFile, `${readFileSync(gw.policyFile, 'utf8')}\n# an edit\n`);
  const reloaded = hashOf();
  await waitFor(async () => sample(await metrics(gw), 'govgate_policy_info', { hash: reloaded }) === 1);
  t.is(sample(await metrics(gw), 'govgate_policy_reloads_total', { result: 'success' }), 1);

  writeFileSync(gw.policyFile, 'version: 1\ncustomers: [not, a, mapping]\n');
  await waitFor(async () => sample(await metrics(gw), 'govgate_policy_reloads_total', { result: 'failure' }) === 1);
  t.is(sample(await metrics(gw), 'govgate_policy_info', { hash: reloaded }), 1, 'the last good policy is still the one in force');
});

test('model names a client invents cannot grow the metrics without bound', async (t) => {
  const { gw, key } = await gateway();
  for (let i = 0; i < 230; i++) await chat(gw, key, `invented-model-${i}`);
  const text = await metrics(gw);
  const models = new Set([...text.matchAll(/^govgate_requests_total\{[^}]*model="([^"]*)"/gm)].map((m) => m[1]));
  t.true(models.size <= 201, `${models.size} model label values`);
  t.true(models.has('_other'));
});

test('/readyz is 503 while the audit database refuses writes and 200 again once it takes them', async (t) => {
  const { gw, key } = await gateway();
  const ready = async () => (await fetch(`${gw.url}/readyz`)).status;
  t.is(await ready(), 200);
  t.is((await fetch(`${gw.url}/healthz`)).status, 200);

  const lock = await WriteLock.take(gw.dbPath);
  locks.push(lock);
  try {
    t.is(await chat(gw, key, 'gpt-4o-mini'), 503, 'with on_write_failure: block the request is refused');
    t.is(await ready(), 503);
    t.is((await fetch(`${gw.url}/healthz`)).status, 200, 'the process itself is still healthy');
    t.true((sample(await metrics(gw), 'govgate_audit_write_failures_total') ?? 0) >= 1);
  } finally {
    await lock.release();
  }
  t.is(await ready(), 200, 'readiness recovers without traffic');
  t.is(await chat(gw, key, 'gpt-4o-mini'), 200);
});

async function waitFor(probe: () => Promise<boolean>, timeoutMs = 1500): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
