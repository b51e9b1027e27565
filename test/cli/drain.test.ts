import { writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { Agent, request } from 'undici';
import { makeGatewayDir, FIXTURE_POLICY, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { poll } from './support.js';

const upstreams: MockUpstream[] = [];
const serves: ServeProcess[] = [];

test.after.always(async () => {
  for (const s of serves) if (s.child.exitCode === null && s.child.signalCode === null) await s.stop('SIGKILL');
  for (const u of upstreams) await u.close();
});

/** A gateway process in front of a provider of its own, whose pace the test sets. */
async function gateway(drainMs: number): Promise<{ s: ServeProcess; key: string; dbPath: string; upstream: MockUpstream }> {
  const upstream = await startMockUpstream();
  upstreams.push(upstream);
  const dir = makeGatewayDir();
  writeGatewayYaml(dir, upstream.url, { server: { drain_timeout_ms: drainMs } });
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  const [seeded] = seedKeys(dir, ['acme']);
  const s = await startServe({ cwd: dir, env: { OPENAI_API_KEY: UPSTREAM_SECRET, PORT: '' } });
  serves.push(s);
  return { s, key: seeded!.key, dbPath: path.join(dir, 'data/audit.db'), upstream };
}

function chat(agent: Agent, url: string, key: string, stream = false) {
  return request(`${url}/v1/chat/completions`, {
    dispatcher: agent,
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] }),
  });
}

test('SIGTERM lets accepted requests and streams finish, records every one, refuses new connections and exits 0', async (t) => {
  const { s, key, dbPath, upstream } = await gateway(10_000);
  upstream.setDelay(400);
  upstream.setStream(8, 100);
  const agent = new Agent({ connections: 64 });
  try {
    const plain = Array.from({ length: 20 }, () => chat(agent, s.url, key).then(async (r) => ({ status: r.statusCode, logId: String(r.headers['x-governance-log-id']), text: await r.body.text() })));
    const streamed = chat(agent, s.url, key, true).then(async (r) => ({ status: r.statusCode, logId: String(r.headers['x-governance-log-id']), text: await r.body.text() }));
    t.truthy(await poll(() => (upstream.received.length >= 21 ? true : undefined), 5000), 'all requests reached the provider before the signal');

    const exited = new Promise<number | null>((resolve) => s.child.once('exit', (code) => resolve(code)));
    s.child.kill('SIGTERM');
    const results = [...(await Promise.all(plain)), await streamed];

    t.true(results.every((r) => r.status === 200), `statuses: ${results.map((r) => r.status).join(',')}`);
    t.is((results.at(-1)!.text.match(/^data: /gm) ?? []).length, 8 + 2, 'the stream was delivered whole: 8 events, the stop chunk and [DONE]');
    t.is(await exited, 0);
    await t.throwsAsync(fetch(`${s.url}/healthz`), undefined, 'the gateway no longer accepts connections');

    const ids = results.map((r) => `'${r.logId}'`).join(',');
    t.is(sqliteJson<{ n: number }>(dbPath, `SELECT COUNT(*) AS n FROM usagelog WHERE id IN (${ids}) AND allowed = 1`)[0]!.n, 21);
    const outcomes = sqliteJson<{ status: number }>(dbPath, `SELECT status FROM usagelog_outcome WHERE log_id IN (${ids})`);
    t.is(outcomes.length, 21, 'every outcome row was flushed before exit');
    t.true(outcomes.every((o) => o.status === 200));
  } finally {
    await agent.close();
  }
});

test('a request still running at the drain deadline is cut, its outcome recorded, and the gateway exits 0', async (t) => {
  const { s, key, dbPath, upstream } = await gateway(500);
  upstream.setDelay(10_000);
  const agent = new Agent();
  try {
    const pending = chat(agent, s.url, key).then(
      (r) => ({ logId: String(r.headers['x-governance-log-id']), failed: false }),
      () => ({ logId: '', failed: true }),
    );
    t.truthy(await poll(() => (upstream.received.length >= 1 ? true : undefined), 5000));
    const started = Date.now();
    const exited = new Promise<number | null>((resolve) => s.child.once('exit', (code) => resolve(code)));
    s.child.kill('SIGTERM');
    t.is(await exited, 0);
    t.true(Date.now() - started < 5000, `exit took ${Date.now() - started} ms with a 500 ms drain deadline`);
    t.true((await pending).failed, 'the client saw its connection closed');
    const [row] = sqliteJson<{ error: string }>(dbPath, `SELECT o.error FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id`);
    t.is(row?.error, 'client_abort');
  } finally {
    await agent.close();
  }
});
