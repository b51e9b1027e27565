import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { makeGatewayDir, startHarness, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { runCli, startServe, type ServeProcess } from '../helpers/cli.js';
import { closedPort } from '../helpers/closed-port.js';
import { redisInstalled, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { decisionRow, logIdOf } from '../proxy/support.js';
import { policy } from '../helpers/policy-builder.js';
import { chat, countOf } from './support.js';

const POLICY = policy().catchAll().customer('shared', { requests_per_minute: 10 }).customer('down', { requests_per_minute: 100 }).yaml();

const installed = redisInstalled();
if (!installed) console.warn('redis-store: tests that need a redis-server skipped: it is not installed (apt-get install -y redis-server)');
const skipNote = installed ? '' : ' (SKIPPED: redis-server is not installed; apt-get install -y redis-server)';
/** Tests that need a real redis-server: skipped, and reported as such, where none is installed. */
const redisTest = installed ? test : test.skip;

let upstream: MockUpstream;
let redis: RedisServer;

test.before(async () => {
  upstream = await startMockUpstream();
  if (installed) redis = await startRedis();
});

test.after.always(async () => {
  await redis?.stop();
  await upstream?.close();
});

redisTest(`two gateway processes sharing Redis let exactly N requests per minute through between them${skipNote}`, async (t) => {
  const dirs = [makeGatewayDir(), makeGatewayDir()];
  const gateways: ServeProcess[] = [];
  // A provider of its own: the delay that keeps the burst in flight would slow the other tests' requests.
  const slow = await startMockUpstream();
  try {
    const env = { OPENAI_API_KEY: UPSTREAM_SECRET };
    const keys = dirs.map((dir) => {
      writeGatewayYaml(dir, slow.url, { limits: { store: 'redis', redis_url: redis.url } });
      writeFileSync(path.join(dir, 'config/policy.yaml'), POLICY);
      // Each gateway has its own key store: the customer, not the key, is what they share.
      return (JSON.parse(runCli(['keys', 'create', '--customer', 'shared', '--json'], { cwd: dir, env }).stdout) as { key: string }).key;
    });
    for (const dir of dirs) gateways.push(await startServe({ cwd: dir, env }));
    slow.setDelay(20);
    const statuses = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const res = await chat(gateways[i % 2]!.url, keys[i % 2]!);
        await res.arrayBuffer();
        return { status: res.status, gateway: i % 2 };
      }),
    );
    t.is(countOf(statuses.map((s) => s.status), 200), 10, 'exactly the limit, across both');
    t.is(countOf(statuses.map((s) => s.status), 429), 50);
    t.is(slow.received.length, 10);
    for (const g of [0, 1]) {
      const next = await chat(gateways[g]!.url, keys[g]!);
      t.is(next.status, 429, `gateway ${g} sees the shared count`);
    }
  } finally {
    for (const g of gateways) await g.stop();
    await slow.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
});

redisTest(`Redis going down with on_store_failure: block refuses limited requests with 503 limits_unavailable${skipNote}`, async (t) => {
  const own = await startRedis();
  const gw = await startHarness(upstream.url, { policy: POLICY, limits: { store: 'redis', redis_url: own.url, on_store_failure: 'block' } });
  try {
    const { key } = gw.createKey('down');
    t.is((await chat(gw.url, key)).status, 200);
    await own.stop();
    const res = await chat(gw.url, key);
    t.is(res.status, 503);
    t.is(((await res.json()) as { error: { code: string } }).error.code, 'limits_unavailable');
    const row = decisionRow(gw.dbPath, logIdOf(res.headers));
    t.is(row?.allowed, 0);
    t.regex(row?.reason ?? '', /^limits_unavailable: /);
    const unlimited = gw.createKey('no-limits');
    t.is((await chat(gw.url, unlimited.key)).status, 200, 'a request no limit applies to does not need the store');
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    t.regex(metrics, /govgate_limit_store_failures_total\{mode="block"\} 1/);
  } finally {
    await gw.close();
    await own.stop();
  }
});

// Needs no redis-server: the URL points at a closed port.
test('Redis unreachable with on_store_failure: allow forwards, flags the response and counts it', async (t) => {
  const gw = await startHarness(upstream.url, { policy: POLICY, limits: { store: 'redis', redis_url: `redis://127.0.0.1:${await closedPort()}`, on_store_failure: 'allow' } });
  try {
    const { key } = gw.createKey('down');
    const tag = newTag();
    const res = await chat(gw.url, key, undefined, tag);
    t.is(res.status, 200);
    t.is(res.headers.get('x-governance-limits'), 'unchecked');
    t.is(upstream.tagged(tag).length, 1);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    t.regex(metrics, /govgate_limit_store_failures_total\{mode="allow"\} 1/);
    t.true(gw.logs.some((line) => line.includes('limit store (redis) unreachable')));
  } finally {
    await gw.close();
  }
});
