/**
 * `npm run bench:audit`: the audit trail's own figures (issue 4), on this machine.
 *  1. `audit verify` over a chain of VERIFY_ROWS decision rows: time and peak RSS of the CLI process.
 *  2. Retention pruning PRUNE_ROWS expired rows inside a serving gateway (its own node-cron job),
 *     twice: while LOAD_CONNECTIONS clients keep requesting (a closed load: as many requests as the
 *     machine serves, every core busy), then at a fixed rate of half what that load got during
 *     its prune (an open load, with the headroom a gateway is run with). Latency at the client, and what the gateway itself
 *     saw (its overhead, lock-wait and batch histograms, its event-loop lag, the WAL's size), during
 *     the prune against the same load after it.
 *  3. The cost of `audit.synchronous`: group-commit rows per second and single-row commit latency,
 *     FULL against NORMAL.
 * Writes test/bench/AUDIT-RESULTS.md and prints it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { AuditWriter } from '../../gateway/audit/audit-writer.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { createKey } from '../../gateway/auth/key-store.js';
import { syntheticDecision, writeAuditRows } from '../helpers/audit-rows.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const VERIFY_ROWS = Number(process.env.BENCH_VERIFY_ROWS ?? 1_000_000);
const PRUNE_ROWS = Number(process.env.BENCH_PRUNE_ROWS ?? 1_000_000);
const LOAD_CONNECTIONS = 8;
const SYNC_ROWS = 20_000;
/** The same load, once the prune is over, for comparison. */
const AFTER_MS = 15_000;
/**
 * The prune starts this long after the gateway is configured, the load soon
 * after it listens: a gateway that has just started answers its first
 * requests slowly (open load at 850/s: p50 over 300 ms in its first two
 * seconds, with no prune), which is not the prune's doing.
 */
const WARMUP_MS = 12_000;
const PRUNE_START_TIMEOUT_MS = 60_000;

const children: ChildProcess[] = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

/** Writes the rows with the gateway's own writer; resolves to the seconds it took. */
async function generate(file: string, rows: number, ageDays: number, withOutcomes: boolean): Promise<number> {
  const started = performance.now();
  await writeAuditRows(file, rows, ageDays, withOutcomes);
  return (performance.now() - started) / 1000;
}

function gatewayDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-bench-audit-'));
  mkdirSync(path.join(dir, 'config'));
  mkdirSync(path.join(dir, 'data'));
  writeFileSync(path.join(dir, 'config/policy.yaml'), readFileSync(path.join(ROOT, 'config/policy.yaml')));
  return dir;
}

// ---------------------------------------------------------------- 1. verify

async function verifyFigures(): Promise<{ generateS: number; verifyS: number; rssMb: number; output: string }> {
  const dir = gatewayDir();
  try {
    writeFileSync(path.join(dir, 'config/gateway.yaml'), 'providers:\n  - name: openai\n    base_url: http://127.0.0.1:9/v1\n');
    const generateS = await generate(path.join(dir, 'data/audit.db'), VERIFY_ROWS, 0, false);
    const started = performance.now();
    const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, path.join(ROOT, 'dist/gateway/cli/main.js'), 'audit', 'verify'], { cwd: dir, encoding: 'utf8' });
    const verifyS = (performance.now() - started) / 1000;
    if (r.status !== 0) throw new Error(`audit verify failed: ${r.stdout}${r.stderr}`);
    const rssKb = Number(r.stderr.trim().split('\n').pop());
    return { generateS, verifyS, rssMb: rssKb / 1024, output: r.stdout.trim().split('\n').pop()! };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- 2. retention under load

interface Window { requests: number; errors: number; p50ms: number; p99ms: number; p999ms: number; maxMs: number; over: Record<string, number> }

/**
 * Closed: `connections` clients, each sending its next request when its last is answered. Open:
 * `perSecond` requests whatever the pace of the answers, each timed from when it was due, so that
 * the load generator falling behind (it shares the cores) counts against the latency, not for it.
 */
type LoadShape = { readonly connections: number } | { readonly perSecond: number };

const OPEN_LOAD_CONNECTIONS = 64;
const OPEN_LOAD_SHARE = 0.5;

/** Cumulative bucket counts of one of the gateway's histograms, by upper bound in seconds. */
type Buckets = Map<number, number>;

interface GatewayView {
  /** govgate_overhead_seconds: authentication, policy and the audit commit, before forwarding. */
  overhead: Buckets;
  /** govgate_audit_lock_wait_seconds: how long group commits waited for another connection's write lock. */
  lockWait: Buckets;
  /** govgate_audit_prune_batch_seconds: how long each retention batch held the writer and the event loop. */
  pruneBatch: Buckets;
  lagMaxMs: number;
}

/** What the gateway itself saw between two scrapes, so the load generator's own stalls do not count. */
interface GatewayWindow {
  requests: number;
  overOverhead: Record<string, number>;
  commits: number;
  overWait: Record<string, number>;
  /** Smallest bucket bound that holds every wait (a histogram keeps no maximum). */
  longestWaitMs: number;
  batches: number;
  overBatch: Record<string, number>;
  longestBatchMs: number;
  lagMaxMs: number;
}

const THRESHOLDS_S = [0.005, 0.01, 0.025];
const BATCH_THRESHOLDS_S = [0.002, 0.005, 0.01];

function startChild(args: string[], cwd: string, ready: RegExp, from: 'stdout' | 'stderr', env: NodeJS.ProcessEnv = {}): Promise<RegExpExecArray> {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let text = '';
    const stream = from === 'stdout' ? child.stdout : child.stderr;
    (from === 'stdout' ? child.stderr : child.stdout).resume();
    stream.setEncoding('utf8').on('data', (d: string) => {
      text += d;
      const m = ready.exec(text);
      if (m) resolve(m);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${text}`)));
  });
}

interface RetentionFigures { warmupS: number; pruneS: number; during: Window; after: Window; gwDuring: GatewayWindow; gwAfter: GatewayWindow; walMaxMb: number; kept: number }

/**
 * Runs `send` at the shape's pace, with the time each request was due, until the returned
 * function is called; that resolves once every request is answered. `send` must not reject.
 */
function startLoad(shape: LoadShape, send: (dueAt: number) => Promise<void>): () => Promise<void> {
  let stop = false;
  if ('connections' in shape) {
    const loops = Array.from({ length: shape.connections }, async () => {
      while (!stop) await send(performance.now());
    });
    return async () => {
      stop = true;
      await Promise.all(loops);
    };
  }
  const interval = 1000 / shape.perSecond;
  const inFlight = new Set<Promise<void>>();
  const ticker = (async () => {
    let next = performance.now();
    while (!stop) {
      for (; next <= performance.now(); next += interval) {
        const request: Promise<void> = send(next).finally(() => inFlight.delete(request));
        inFlight.add(request);
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  return async () => {
    stop = true;
    await ticker;
    await Promise.all(inFlight);
  };
}

async function retentionUnderLoad(shape: LoadShape): Promise<RetentionFigures> {
  const dir = gatewayDir();
  const dbPath = path.join(dir, 'data/audit.db');
  try {
    const upstreamPort = (await startChild(['--import', 'tsx', path.join(ROOT, 'test/bench/bench-upstream.ts')], ROOT, /^(\d+)\n/, 'stdout'))[1];
    await generate(dbPath, PRUNE_ROWS, 100, true);
    const keepDb = openDatabase(dbPath, { synchronous: 'NORMAL' });
    const { key } = createKey(keepDb, 'bench', 'bench');
    keepDb.close();
    // The gateway's own schedule does the pruning, on its audit writer's connection, once the load
    // has warmed it up; on a whole second, as cron has no finer field.
    const pruneAt = new Date(Math.ceil((Date.now() + WARMUP_MS) / 1000) * 1000);
    writeFileSync(path.join(dir, 'config/gateway.yaml'), [
      'server: { host: 127.0.0.1, port: 0 }',
      `providers: [{ name: openai, base_url: "http://127.0.0.1:${upstreamPort}/v1", api_key_env: OPENAI_API_KEY }]`,
      `audit: { path: data/audit.db, retention_days: 90, cleanup_schedule: "${pruneAt.getUTCSeconds()} ${pruneAt.getUTCMinutes()} ${pruneAt.getUTCHours()} * * *" }`,
      'log: { level: warn }',
    ].join('\n'));
    const url = (await startChild([path.join(ROOT, 'dist/gateway/cli/main.js'), 'serve'], dir, /listening on (http:\/\/\S+)/, 'stderr', { OPENAI_API_KEY: 'sk-bench', SENTRY_DSN: '' }))[1]!;
    const pool = new Pool(url, { connections: 'connections' in shape ? shape.connections : OPEN_LOAD_CONNECTIONS });
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello '.repeat(150) }], max_tokens: 256 });
    const reader = openDatabase(dbPath, { synchronous: 'NORMAL', readonly: true });
    // The oldest rows, by rowid: cheap probes that neither load the machine nor hold a snapshot for long.
    const oldest = reader.prepare('SELECT created_at FROM usagelog_outcome ORDER BY rowid LIMIT 1').pluck();
    const firstDecision = reader.prepare('SELECT rowid FROM usagelog ORDER BY rowid LIMIT 1').pluck();
    const cutoff = reader.prepare("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', '-90 days')").pluck();
    const expired = { get: () => ((oldest.get() as string | undefined) ?? '9') < (cutoff.get() as string) };
    const unpruned = firstDecision.get();

    const samples: number[] = [];
    let errors = 0;
    const statuses = new Map<number | string, number>();
    const stopLoad = startLoad(shape, async (dueAt) => {
      let status: number | string;
      try {
        const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', body, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
        await res.body.dump();
        status = res.statusCode;
      } catch (err) {
        status = (err as { code?: string }).code ?? 'error';
      }
      samples.push(performance.now() - dueAt);
      if (status !== 200) {
        errors++;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    });
    const loadStarted = performance.now();
    while (firstDecision.get() === unpruned) {
      if (performance.now() - loadStarted > PRUNE_START_TIMEOUT_MS) throw new Error('the gateway did not start pruning');
      await new Promise((r) => setTimeout(r, 10));
    }
    const pruneStarted = performance.now();
    const warmupS = (pruneStarted - loadStarted) / 1000;
    if (warmupS < WARMUP_MS / 2000) throw new Error(`the load ran only ${warmupS.toFixed(1)} s before the prune started`);
    samples.splice(0);
    errors = 0;
    const atStart = await scrapeView(pool);
    let walMaxMb = 0;
    while (expired.get()) {
      walMaxMb = Math.max(walMaxMb, (statSync(`${dbPath}-wal`, { throwIfNoEntry: false })?.size ?? 0) / 2 ** 20);
      await new Promise((r) => setTimeout(r, 50));
    }
    const pruneS = (performance.now() - pruneStarted) / 1000;
    // Summarised once the load has stopped: sorting a million samples stalls this process, and an open load would count the stall.
    const duringSamples = samples.splice(0);
    const duringErrors = errors;
    const atPruneEnd = await scrapeView(pool);
    errors = 0;
    await new Promise((r) => setTimeout(r, AFTER_MS));
    await stopLoad();
    const during = summarise(duringSamples, duringErrors);
    const after = summarise(samples.splice(0), errors);
    const atEnd = await scrapeView(pool);
    const kept = reader.prepare('SELECT count(*) FROM usagelog').pluck().get() as number;
    reader.close();
    await pool.close();
    if (statuses.size > 0) console.error(`bench:audit: non-200 answers by status: ${JSON.stringify(Object.fromEntries(statuses))}`);
    return { warmupS, pruneS, during, after, gwDuring: gatewayWindow(atStart, atPruneEnd), gwAfter: gatewayWindow(atPruneEnd, atEnd), walMaxMb, kept };
  } finally {
    children.forEach((c) => c.kill('SIGKILL'));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** prom-client's event-loop lag gauges cover the time since the previous scrape; the histograms are cumulative. */
async function scrapeView(pool: Pool): Promise<GatewayView> {
  const res = await pool.request({ path: '/metrics', method: 'GET' });
  const text = await res.body.text();
  const buckets = (name: string): Buckets => {
    const out: Buckets = new Map();
    for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)`, 'gm'))) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
    return out;
  };
  return {
    overhead: buckets('govgate_overhead_seconds'),
    lockWait: buckets('govgate_audit_lock_wait_seconds'),
    pruneBatch: buckets('govgate_audit_prune_batch_seconds'),
    lagMaxMs: Number(/^govgate_nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text)?.[1] ?? NaN) * 1000,
  };
}

function gatewayWindow(from: GatewayView, to: GatewayView): GatewayWindow {
  const delta = (b: 'overhead' | 'lockWait' | 'pruneBatch', le: number) => (to[b].get(le) ?? 0) - (from[b].get(le) ?? 0);
  const requests = delta('overhead', Infinity);
  const commits = delta('lockWait', Infinity);
  const batches = delta('pruneBatch', Infinity);
  const label = (le: number) => `${le * 1000} ms`;
  const longest = (b: 'lockWait' | 'pruneBatch', total: number) => [...to[b].keys()].sort((x, y) => x - y).find((le) => delta(b, le) === total) ?? Infinity;
  return {
    requests,
    overOverhead: Object.fromEntries(THRESHOLDS_S.map((le) => [label(le), requests - delta('overhead', le)])),
    commits,
    overWait: Object.fromEntries(THRESHOLDS_S.map((le) => [label(le), commits - delta('lockWait', le)])),
    longestWaitMs: longest('lockWait', commits) * 1000,
    batches,
    overBatch: Object.fromEntries(BATCH_THRESHOLDS_S.map((le) => [label(le), batches - delta('pruneBatch', le)])),
    longestBatchMs: batches === 0 ? 0 : longest('pruneBatch', batches) * 1000,
    lagMaxMs: to.lagMaxMs,
  };
}

function summarise(ms: number[], errors: number): Window {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
  const over = Object.fromEntries(THRESHOLDS_S.map((le) => [`${le * 1000} ms`, ms.filter((x) => x > le * 1000).length]));
  return { requests: ms.length, errors, p50ms: at(50), p99ms: at(99), p999ms: at(99.9), maxMs: sorted[sorted.length - 1] ?? NaN, over };
}

// ---------------------------------------------------------------- 3. synchronous FULL vs NORMAL

async function syncCost(mode: 'FULL' | 'NORMAL'): Promise<{ groupRowsPerS: number; singleCommitUs: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-bench-sync-'));
  try {
    const file = path.join(dir, 'audit.db');
    const db = openDatabase(file, { synchronous: mode });
    const writer = new AuditWriter(db, new StoreFile(file), { onCommit() {}, onFailure(err) { throw err; } });
    const now = sqliteTime();
    let started = performance.now();
    for (let i = 0; i < SYNC_ROWS; i += 32) await Promise.all(Array.from({ length: 32 }, (_, j) => writer.record(syntheticDecision(i + j, now))));
    const groupRowsPerS = SYNC_ROWS / ((performance.now() - started) / 1000);
    const singles: number[] = [];
    for (let i = 0; i < 2000; i++) {
      started = performance.now();
      await writer.record(syntheticDecision(SYNC_ROWS + i, now));
      singles.push((performance.now() - started) * 1000);
    }
    db.close();
    singles.sort((a, b) => a - b);
    return { groupRowsPerS, singleCommitUs: singles[1000]! };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The table's rows for one prune under one load. */
function retentionRows(load: string, r: RetentionFigures): string[] {
  const f = (n: number) => n.toFixed(2);
  const over = (w: Window) => `${Object.values(w.over).join(' / ')} of ${w.requests}`;
  return [
    `| **${load}**: ${PRUNE_ROWS} expired decision rows + ${PRUNE_ROWS} outcome rows pruned by the gateway's cron job | ${r.pruneS.toFixed(1)} s, after ${r.warmupS.toFixed(1)} s of the same load |`,
    `| … requests during the prune: count / errors | ${r.during.requests} / ${r.during.errors} |`,
    `| … latency during the prune: p50 / p99 / p99.9 / max | ${f(r.during.p50ms)} / ${f(r.during.p99ms)} / ${f(r.during.p999ms)} / ${f(r.during.maxMs)} ms |`,
    `| … same load after it: p50 / p99 / p99.9 / max | ${f(r.after.p50ms)} / ${f(r.after.p99ms)} / ${f(r.after.p999ms)} / ${f(r.after.maxMs)} ms |`,
    `| … requests slower than ${Object.keys(r.during.over).join(' / ')} at the client: during the prune | ${over(r.during)} |`,
    `| … after it | ${over(r.after)} |`,
    `| … gateway event-loop lag, max during the prune / after it (prom-client) | ${f(r.gwDuring.lagMaxMs)} / ${f(r.gwAfter.lagMaxMs)} ms |`,
    `| … requests whose gateway overhead (auth, policy, audit commit; govgate_overhead_seconds) exceeded ${Object.keys(r.gwDuring.overOverhead).join(' / ')}: during the prune | ${Object.values(r.gwDuring.overOverhead).join(' / ')} of ${r.gwDuring.requests} |`,
    `| … after it | ${Object.values(r.gwAfter.overOverhead).join(' / ')} of ${r.gwAfter.requests} |`,
    `| … audit commits that waited for another connection's write lock longer than ${Object.keys(r.gwDuring.overWait).join(' / ')}: during the prune | ${Object.values(r.gwDuring.overWait).join(' / ')} of ${r.gwDuring.commits}; longest ≤ ${r.gwDuring.longestWaitMs} ms |`,
    `| … after it | ${Object.values(r.gwAfter.overWait).join(' / ')} of ${r.gwAfter.commits}; longest ≤ ${r.gwAfter.longestWaitMs} ms |`,
    `| … retention batches (each holds the audit writer and the event loop) longer than ${Object.keys(r.gwDuring.overBatch).join(' / ')} | ${Object.values(r.gwDuring.overBatch).join(' / ')} of ${r.gwDuring.batches}; longest ≤ ${r.gwDuring.longestBatchMs} ms |`,
    `| … largest WAL during the prune (sampled every 50 ms) | ${r.walMaxMb.toFixed(1)} MiB |`,
    `| … rows left after the prune (all inside the window) | ${r.kept} |`,
  ];
}

async function main(): Promise<void> {
  if (spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' }).status !== 0) throw new Error('build failed');
  console.error(`bench:audit: verify over ${VERIFY_ROWS} rows …`);
  const v = await verifyFigures();
  console.error(`bench:audit: pruning ${PRUNE_ROWS} expired rows under a closed load of ${LOAD_CONNECTIONS} connections …`);
  const closed = await retentionUnderLoad({ connections: LOAD_CONNECTIONS });
  const perSecond = Math.max(50, Math.round((OPEN_LOAD_SHARE * closed.during.requests) / closed.pruneS / 50) * 50);
  console.error(`bench:audit: pruning ${PRUNE_ROWS} expired rows under an open load of ${perSecond} requests/s …`);
  const open = await retentionUnderLoad({ perSecond });
  console.error('bench:audit: synchronous FULL vs NORMAL …');
  const normal = await syncCost('NORMAL');
  const full = await syncCost('FULL');
  const f = (n: number, d = 1) => n.toFixed(d);
  const table = [
    '# govgate audit trail benchmark',
    '',
    `- Date: ${new Date().toISOString()}; machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
    '- Command: `npm run bench:audit` (test/bench/audit.ts); the gateway runs from dist/ as a child process.',
    '- Pinning: none; the load generator (this process), the mock upstream and the gateway share both cores.',
    `- Closed load: ${LOAD_CONNECTIONS} connections, each sending its next request when its last is answered (every core busy). Open load: ${perSecond} requests/s, ${OPEN_LOAD_SHARE * 100} % of what the closed load got during its prune, each timed from when it was due.`,
    '',
    '| figure | value |',
    '| --- | --- |',
    `| rows generated with the gateway's writer (1000 per group commit) | ${VERIFY_ROWS} in ${f(v.generateS)} s |`,
    `| \`govgate audit verify\` over ${VERIFY_ROWS} decision rows: wall time | ${f(v.verifyS, 2)} s |`,
    `| … peak RSS of the verify process | ${f(v.rssMb, 0)} MiB |`,
    `| … its last line | ${v.output} |`,
    ...retentionRows(`closed load, ${LOAD_CONNECTIONS} connections`, closed),
    ...retentionRows(`open load, ${perSecond} requests/s`, open),
    `| synchronous NORMAL: group commit (32/turn) rows/s; one-row commit p50 | ${f(normal.groupRowsPerS, 0)}; ${f(normal.singleCommitUs, 0)} µs |`,
    `| synchronous FULL: group commit (32/turn) rows/s; one-row commit p50 | ${f(full.groupRowsPerS, 0)}; ${f(full.singleCommitUs, 0)} µs |`,
    '',
  ].join('\n');
  writeFileSync(path.join(ROOT, 'test/bench/AUDIT-RESULTS.md'), table);
  process.stdout.write(table);
}

await main();
process.exit(0);
