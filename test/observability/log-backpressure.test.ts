import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { Pool } from 'undici';
import { STDOUT_MAX_BUFFERED_BYTES } from '../../gateway/observability/logger.js';
import { buildGatewayForChildren, startServe, type ServeProcess } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';

/**
 * Issue 18, point 9: logging can never take the gateway down. A `govgate
 * serve` child logs at info to a stdout the test stops reading, as a paused
 * terminal or a stuck log shipper would, while requests keep coming.
 */

/**
 * Blocked by the fixture policy's `restricted-data` rule: the whole governed
 * path (key, policy, audit row, a ~310-byte log line) without the upstream,
 * twice as many requests a second. 30,000 of them log ~9 MB, twice the bound.
 */
const REQUESTS = 30_000;
const WARM_UP = 2_000;
const CONCURRENCY = 32;
const RESTRICTED = JSON.stringify({ data_classification: 'restricted' });
const HEAP_MB = 64;
/**
 * V8 may fill its capped heap with garbage between collections, so the
 * resident set may grow by up to the cap (18–31 MiB measured); beyond it
 * would be memory outside the heap, such as Buffers, which no cap stops.
 */
const RSS_GROWTH_LIMIT_BYTES = HEAP_MB * 2 ** 20;
/**
 * Besides the bound, what reaches the reader after the stall: the socket
 * pair's kernel buffers (net.core.wmem_default, 208 KiB here) and the
 * stream's read-ahead. Without the bound all ~9 MB would arrive.
 */
const AFTER_STALL_LIMIT_BYTES = STDOUT_MAX_BUFFERED_BYTES + 2 ** 20;
const NOTICE = /^(\d+) log lines dropped while stdout was not being read$/;

interface Notice {
  readonly level: number;
  readonly dropped_lines: number;
  readonly msg: string;
}

let upstream: MockUpstream;
let dir = '';
let build: ReturnType<typeof buildGatewayForChildren> | undefined;
let serve: ServeProcess | undefined;

test.before(async () => {
  build = buildGatewayForChildren();
  upstream = await startMockUpstream();
  dir = makeGatewayDir();
  writeGatewayYaml(dir, upstream.url);
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
});

test.after.always(async () => {
  if (serve && serve.child.exitCode === null && serve.child.signalCode === null) await serve.stop('SIGKILL');
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  build?.remove();
});

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}: the gateway is gone`);
  return Number(m[1]) * 1024;
}

/** `count` blocked chat completions, CONCURRENCY at a time over kept-alive connections; resolves with how many were answered 403. */
async function flood(pool: Pool, key: string, count: number): Promise<number> {
  let sent = 0;
  let refused = 0;
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-governance-metadata': RESTRICTED };
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (sent < count) {
      sent++;
      const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body });
      await res.body.dump();
      if (res.statusCode === 403) refused++;
    }
  }));
  return refused;
}

async function droppedMetric(pool: Pool): Promise<number> {
  const res = await pool.request({ path: '/metrics', method: 'GET' });
  const m = /^govgate_log_lines_dropped_total (\d+)$/m.exec(await res.body.text());
  if (!m) throw new Error('/metrics has no govgate_log_lines_dropped_total');
  return Number(m[1]);
}

function notices(stdout: string): Notice[] {
  return stdout.split('\n').filter((l) => l.includes('log lines dropped')).map((l) => JSON.parse(l) as Notice);
}

test('a stdout nobody reads costs a bounded buffer, counted drops and one notice, not the process', async (t) => {
  // ~35 s at a load average of 6 on 2 cores; the margin is for a busier machine.
  t.timeout(180_000);
  const key = seedKeys(dir, ['acme'])[0]!.key;
  serve = await startServe({ cwd: dir, entry: build!.entry, env: { OPENAI_API_KEY: UPSTREAM_SECRET, PORT: '', NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` } });
  const { child } = serve;
  const pid = child.pid!;
  const pool = new Pool(serve.url, { connections: CONCURRENCY });
  let sampler: NodeJS.Timeout | undefined;
  try {
    // With stdout read, so the heap, the JIT and the connections settle before the baseline.
    t.is(await flood(pool, key, WARM_UP), WARM_UP);
    const baseline = rssBytes(pid);

    child.stdout!.pause();
    const readBeforeStall = serve.stdout().length;
    let peak = baseline;
    sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 100);
    const started = Date.now();
    t.is(await flood(pool, key, REQUESTS), REQUESTS, 'every request was answered');
    clearInterval(sampler);
    peak = Math.max(peak, rssBytes(pid));
    t.log(`${REQUESTS} requests in ${Date.now() - started} ms with stdout unread; RSS ${(baseline / 2 ** 20).toFixed(1)} MiB before, peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
    t.is(child.exitCode, null, 'the gateway is alive');
    t.true(peak - baseline < RSS_GROWTH_LIMIT_BYTES, `RSS grew by ${((peak - baseline) / 2 ** 20).toFixed(1)} MiB`);
    const droppedInStall = await droppedMetric(pool);
    t.true(droppedInStall > 0, `${droppedInStall} lines counted as dropped`);
    t.deepEqual(notices(serve.stdout()), [], 'no notice while stdout is unread');

    child.stdout!.resume();
    const deadline = Date.now() + 30_000;
    while (notices(serve.stdout()).length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const out = serve.stdout();
    const waited = out.indexOf('log lines dropped') - readBeforeStall;
    t.true(waited > 0, 'the notice came once stdout was read again');
    t.log(`${(waited / 2 ** 20).toFixed(2)} MiB of lines were waiting for stdout`);
    t.true(waited < AFTER_STALL_LIMIT_BYTES, `${waited} bytes were waiting, the bound is ${STDOUT_MAX_BUFFERED_BYTES}`);

    // Lines logged after the stall neither drop nor repeat the notice.
    t.is(await flood(pool, key, 100), 100);
    const dropped = await droppedMetric(pool);
    t.is(dropped, droppedInStall, 'nothing dropped once stdout was read again');
    await pool.close();
    t.is(await serve.stop(), 0);

    const said = notices(serve.stdout());
    t.is(said.length, 1, 'the notice appears once per stall, not per line');
    t.is(said[0]!.level, 40);
    t.is(said[0]!.dropped_lines, dropped, 'the notice and /metrics agree');
    t.is(NOTICE.exec(said[0]!.msg)?.[1], String(dropped));
    t.regex(serve.stdout(), /"msg":"stopped"}\n$/, 'the log ends with the shutdown, whole');
  } finally {
    clearInterval(sampler);
    if (!pool.closed) await pool.destroy();
  }
});
