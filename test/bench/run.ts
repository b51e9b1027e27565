/**
 * `npm run bench`: three arms side by side in one run, on loopback —
 * D (client → mock upstream), B (client → bare undici pass-through → mock) and
 * G (client → govgate → mock) — measured in interleaved rounds so that a noisy
 * neighbour hurts every arm alike. Writes test/bench/RESULTS.md and prints it.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { v7 as uuidv7 } from 'uuid';
import { AuditWriter, type DecisionRow } from '../../gateway/audit/audit-writer.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { createKey } from '../../gateway/auth/key-store.js';
import { LARGE_CUSTOMERS, LARGE_RULES, largePolicy, projectId } from './policy.js';
import { prefillAuditFile } from './prefill.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const WARMUP_ROUNDS = 1;
/**
 * 32-connection load each freshly started process gets alone before its first
 * round: a fresh gateway's CPU per request keeps falling for about 10 s of
 * load (about 576 µs in its first 3-s round here, about 240 µs once settled),
 * longer than a warm-up round.
 */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 12);
const LOAD_SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const STREAMS_PER_ROUND = 8;
const IN_FLIGHT = 500;
const IN_FLIGHT_ROUNDS = 5;
const AUDIT_ROWS = 200_000;
const WRITER_RUNS = 3;

/** G: the gateway confined to B's core (its audit writer then stays on the event loop); G2: its event loop on that core, its other threads (the audit writer's) allowed onto the second. */
type Arm = 'D' | 'B' | 'G' | 'G2';
const ARMS: readonly Arm[] = ['D', 'B', 'G', 'G2'];
const noArms = <T>(make: () => T): Record<Arm, T> => ({ D: make(), B: make(), G: make(), G2: make() });

// ---------------------------------------------------------------- machine and pinning

const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const cores = cpus().length;
/** Upstream and load generator share one core, the proxy under test gets the other. */
const PIN = { upstream: cores > 1 ? '1' : '0', proxy: '0', load: cores > 1 ? '1' : '0', twoCores: cores > 1 ? '0,1' : '0' };

function pinned(command: string, args: string[], core: string): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', core, command, ...args]] : [command, args];
}

function ensureWrk(): boolean {
  if (spawnSync('wrk', ['--version']).error === undefined) return true;
  if (process.getuid?.() === 0 && spawnSync('apt-get', ['--version']).status === 0) {
    console.error('bench: installing wrk from Debian …');
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    spawnSync('apt-get', ['install', '-y', '-qq', 'wrk'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  return spawnSync('wrk', ['--version']).error === undefined;
}

// ---------------------------------------------------------------- processes

const children: ChildProcess[] = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

function startProcess(args: string[], core: string, opts: { cwd?: string; readyFrom: 'stdout' | 'stderr'; ready: RegExp; env?: NodeJS.ProcessEnv }): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const [cmd, argv] = pinned(process.execPath, args, core);
  const child = spawn(cmd, argv, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', opts.readyFrom === 'stdout' ? 'pipe' : 'ignore', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let text = '';
    const stream = opts.readyFrom === 'stdout' ? child.stdout! : child.stderr!;
    stream.setEncoding('utf8');
    const onData = (d: string) => {
      text += d;
      const m = opts.ready.exec(text);
      if (m) {
        stream.off('data', onData);
        stream.resume();
        resolve({ child, match: m });
      }
    };
    stream.on('data', onData);
    if (opts.readyFrom === 'stdout') child.stderr!.resume();
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${text}`)));
  });
}

/** CPU time of every thread of a process so far (ns), from each thread's schedstat: finer than utime's 10 ms ticks. */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read; what it used is lost with it, a few µs at most.
    }
  }
  return ns;
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

// ---------------------------------------------------------------- the gateway under test

/** Ten rules that every benchmark request must evaluate; none blocks it. */
const BENCH_RULES = `
  - id: bench-department-finance
    when: { metadata.department: finance, model: "gpt-4*" }
    risk: 20
  - id: bench-region-outside-eu
    when: { metadata.region: { not: [eu-west-1, eu-central-1] } }
    risk: 10
  - id: bench-big-bodies
    when: { request.body_bytes: { gt: 65536 } }
    risk: 20
  - id: bench-many-messages
    when: { request.messages: { gte: 50 } }
    risk: 10
  - id: bench-tools
    when: { request.tools: { exists: true }, operation: chat.completions }
    risk: 5
  - id: bench-streaming-secret
    when: { request.stream: true, metadata.data_classification: confidential }
    risk: 40
  - id: bench-ticket-required
    when: { metadata.ticket: { exists: false }, customer: "contractor-*" }
    action: block
    reason: Contractors need a ticket
  - id: bench-embeddings
    when: { operation: "embeddings", metadata.contains_pii: true }
    risk: 50
  - id: bench-preview-models
    when: { model: ["*-preview", "o1-*"] }
    risk: 15
  - id: bench-night-batch
    when: { metadata.batch: true, request.max_tokens: { gt: 4000 } }
    risk: 25
`;

interface GovgateOptions {
  /** Instead of the shipped policy + BENCH_RULES. */
  readonly policy?: string;
  /** The process may use both cores, then its main thread (the event loop) is pinned back to B's core, so only its other threads use the second. */
  readonly twoCores?: boolean;
  /** Decisions (and as many outcomes) already in the audit file when the gateway starts. */
  readonly prefillRows?: number;
}

interface Govgate { readonly url: string; readonly key: string; readonly child: ChildProcess; readonly dir: string }

async function startGovgate(upstream: string, { policy, twoCores = false, prefillRows = 0 }: GovgateOptions = {}): Promise<Govgate> {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-bench-'));
  mkdirSync(path.join(dir, 'config'));
  const shipped = readFileSync(path.join(ROOT, 'config/gateway.yaml'), 'utf8');
  writeFileSync(path.join(dir, 'config/gateway.yaml'), shipped
    .replace('https://api.openai.com/v1', upstream)
    .replace(/port: 8080\s/, 'port: 0 '));
  writeFileSync(path.join(dir, 'config/policy.yaml'), policy ?? readFileSync(path.join(ROOT, 'config/policy.yaml'), 'utf8') + BENCH_RULES);
  const file = path.join(dir, 'data/audit.db');
  if (prefillRows > 0) {
    mkdirSync(path.dirname(file));
    prefillAuditFile(file, prefillRows, (done) => process.stderr.write(`\rbench: prefilled ${fmt(done)} of ${fmt(prefillRows)} decisions and outcomes`));
    process.stderr.write('\n');
  }
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  const { key } = createKey(db, 'bench', 'bench');
  db.close();
  const { child, match } = await startProcess([path.join(ROOT, 'dist/gateway/cli/main.js'), 'serve'], twoCores ? PIN.twoCores : PIN.proxy, {
    cwd: dir, readyFrom: 'stderr', ready: /listening on (http:\/\/\S+)/, env: { OPENAI_API_KEY: 'sk-bench', SENTRY_DSN: '' },
  });
  // Without -a only the main thread moves; the threads started already (the audit writer's) keep both cores.
  if (twoCores && hasTaskset) execFileSync('taskset', ['-p', '-c', PIN.proxy, String(child.pid)], { stdio: 'ignore' });
  return { url: match[1]!, key, child, dir };
}

// ---------------------------------------------------------------- load

/** A chat completion request of about 1 KB, with governance metadata the rules read. */
const BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You are a helpful assistant. '.repeat(12) },
    { role: 'user', content: 'Summarise the quarterly report in three bullet points. '.repeat(10) },
  ],
  max_tokens: 256,
  temperature: 0.2,
});
const METADATA = JSON.stringify({ data_classification: 'internal', department: 'engineering', region: 'eu-west-1', contains_pii: false });

interface LoadResult { rps: number; requests: number; p50us: number; p99us: number; errors: number }

function wrkScript(file: string, key: string, metadata = METADATA): void {
  writeFileSync(file, `
wrk.method = "POST"
wrk.body = ${JSON.stringify(BODY)}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${key}"
wrk.headers["X-Governance-Metadata"] = ${JSON.stringify(metadata)}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
`);
}

let loadGenerator: 'wrk' | 'autocannon' = 'wrk';
let scriptFile = '';

async function load(url: string, connections: number, key: string, script = scriptFile, metadata = METADATA, seconds = LOAD_SECONDS): Promise<LoadResult> {
  const target = `${url}/v1/chat/completions`;
  if (loadGenerator === 'wrk') {
    const threads = String(Math.min(2, connections));
    const [cmd, argv] = pinned('wrk', ['-t', threads, '-c', String(connections), '-d', `${seconds}s`, '-s', script, target], PIN.load);
    const out = execFileSync(cmd, argv, { encoding: 'utf8' });
    const m = /BENCH requests=(\d+) duration_us=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+)/.exec(out);
    if (!m) throw new Error(`unexpected wrk output: ${out}`);
    return { rps: Number(m[1]) / (Number(m[2]) / 1e6), requests: Number(m[1]), errors: Number(m[3]), p50us: Number(m[4]), p99us: Number(m[5]) };
  }
  const { default: autocannon } = await import('autocannon');
  const result = await autocannon({
    url: target, method: 'POST', body: BODY, connections, duration: seconds,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-governance-metadata': metadata },
  });
  return { rps: result.requests.average, requests: result.requests.total, errors: result.errors + result.non2xx, p50us: result.latency.p50 * 1000, p99us: result.latency.p99 * 1000 };
}

// ---------------------------------------------------------------- streaming

interface StreamSample { ttfcMs: number; gapsMs: number[]; deliveryUs: number[]; events: number; reads: number }

async function streamOnce(pool: Pool, key: string): Promise<StreamSample> {
  const started = performance.now();
  const { body, statusCode } = await pool.request({
    path: '/v1/chat/completions', method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-governance-metadata': METADATA },
    body: JSON.stringify({ ...JSON.parse(BODY), stream: true }),
  });
  if (statusCode !== 200) throw new Error(`stream answered ${statusCode}`);
  let ttfcMs = -1;
  let last = 0;
  let events = 0;
  let reads = 0;
  const gapsMs: number[] = [];
  const deliveryUs: number[] = [];
  for await (const chunk of body) {
    const now = performance.now();
    const arrivedNs = process.hrtime.bigint();
    reads++;
    const text = (chunk as Buffer).toString('utf8');
    for (const m of text.matchAll(/"sent_ns":(\d+)/g)) {
      events++;
      deliveryUs.push(Number(arrivedNs - BigInt(m[1]!)) / 1000);
      if (ttfcMs < 0) ttfcMs = now - started;
      else gapsMs.push(now - last);
      last = now;
    }
  }
  return { ttfcMs, gapsMs, deliveryUs, events, reads };
}

async function streams(url: string, key: string): Promise<StreamSample[]> {
  const pool = new Pool(url, { connections: STREAMS_PER_ROUND });
  try {
    return await Promise.all(Array.from({ length: STREAMS_PER_ROUND }, () => streamOnce(pool, key)));
  } finally {
    await pool.close();
  }
}

// ---------------------------------------------------------------- many in flight

/**
 * IN_FLIGHT requests whose upstream answers after 1 s, started evenly over
 * IN_FLIGHT_RAMP_MS: since each lasts longer than the ramp, all of them are in
 * flight together at its end. The ramp measures what holding many open
 * requests costs, not how long one core takes to parse 500 requests that
 * arrive in the same millisecond.
 */
const IN_FLIGHT_RAMP_MS = 500;

async function inFlight(url: string, key: string): Promise<{ ok: number; latenciesMs: number[]; peak: number }> {
  const pool = new Pool(url, { connections: IN_FLIGHT + 10 });
  let open = 0;
  let peak = 0;
  try {
    const results = await Promise.all(Array.from({ length: IN_FLIGHT }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, (i * IN_FLIGHT_RAMP_MS) / IN_FLIGHT));
      const started = performance.now();
      peak = Math.max(peak, ++open);
      const { statusCode, body } = await pool.request({
        path: '/v1/chat/completions', method: 'POST', body: BODY,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-governance-metadata': METADATA, 'x-bench-delay-ms': '1000' },
      });
      await body.dump();
      open--;
      return { ok: statusCode === 200, ms: performance.now() - started };
    }));
    return { ok: results.filter((r) => r.ok).length, latenciesMs: results.map((r) => r.ms), peak };
  } finally {
    await pool.close();
  }
}

// ---------------------------------------------------------------- a request after a pause

/**
 * A gateway with pauses in its traffic: one request at a time on a kept-alive
 * connection, each after PAUSE_MS of nothing, long enough for every
 * background tick (the WAL checkpointer's is 100 ms) to have run.
 */
const PAUSE_MS = 300;
const PAUSED_REQUESTS = 30;
const PAUSE_WARMUP = 5;

async function afterPauses(urls: Record<Arm, string>, keys: Record<Arm, string>): Promise<Record<Arm, number[]>> {
  const latencies = noArms<number[]>(() => []);
  const pools = Object.fromEntries(ARMS.map((arm) => [arm, new Pool(urls[arm], { connections: 1 })])) as Record<Arm, Pool>;
  try {
    for (let i = 0; i < PAUSE_WARMUP + PAUSED_REQUESTS; i++) {
      for (const arm of ARMS) {
        await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
        const started = performance.now();
        const { statusCode, body } = await pools[arm].request({
          path: '/v1/chat/completions', method: 'POST', body: BODY,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${keys[arm]}`, 'x-governance-metadata': METADATA },
        });
        await body.dump();
        if (statusCode !== 200) throw new Error(`a request after a pause answered ${statusCode}`);
        if (i >= PAUSE_WARMUP) latencies[arm].push((performance.now() - started) * 1000);
      }
    }
  } finally {
    await Promise.all(ARMS.map((arm) => pools[arm].close()));
  }
  return latencies;
}

// ---------------------------------------------------------------- gateways side by side

interface SideArm { readonly url: string; readonly key: string; readonly script: string; readonly pid: number; /** Started for this phase: warmed up alone first. */ readonly fresh: boolean }
interface SideRuns { readonly rps: number[]; readonly cpuUs: number[] }

/**
 * Throughput and CPU per request at 32 connections of gateways on B's core, in
 * interleaved rounds whose order rotates, after WARMUP_ROUNDS discarded. Each
 * round's runs follow each other, so `pairedRatio` can compare within a round.
 */
async function sideBySide(label: string, arms: readonly SideArm[], metadata = METADATA): Promise<{ runs: SideRuns[]; errors: number }> {
  const runs = arms.map((): SideRuns => ({ rps: [], cpuUs: [] }));
  let errors = 0;
  for (const arm of arms) if (arm.fresh) await load(arm.url, 32, arm.key, arm.script, metadata, WARMUP_SECONDS);
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    const rps: number[] = [];
    for (let k = 0; k < arms.length; k++) {
      const i = (k + round) % arms.length;
      const arm = arms[i]!;
      const before = cpuNs(arm.pid);
      const r = await load(arm.url, 32, arm.key, arm.script, metadata);
      rps[i] = r.rps;
      if (round >= WARMUP_ROUNDS) {
        runs[i]!.rps.push(r.rps);
        runs[i]!.cpuUs.push((cpuNs(arm.pid) - before) / 1000 / r.requests);
        errors += r.errors;
      }
    }
    console.error(`bench: ${label} round ${round + 1}/${WARMUP_ROUNDS + ROUNDS}${round < WARMUP_ROUNDS ? ' (warm-up)' : ''}: ${rps.map((r) => `${fmt(r)} req/s`).join(', ')}`);
  }
  return { runs, errors };
}

/** The median over rounds of a / b within each round: a neighbour's load that comes and goes between rounds cancels out. */
const pairedRatio = (a: readonly number[], b: readonly number[]) => median(a.map((x, i) => x / b[i]!));

// ---------------------------------------------------------------- a large policy

/** A project with a rule in the generated policy whose model glob (`gpt-4*`) matches the requests' model. */
const LARGE_PROJECT = projectId(40);

/**
 * Two gateways started together for this phase, one under the shipped policy
 * (+ the bench rules), one under the same policy grown by LARGE_CUSTOMERS
 * customers and LARGE_RULES rules on `metadata.project` and a model glob, both
 * sent the same requests tagged with LARGE_PROJECT. Not G: after the main
 * rounds G's process is older and its audit file bigger, so the two would
 * differ by more than the policy.
 */
async function largePolicyPhase(upstream: string, workDir: string): Promise<{ shipped: SideRuns; large: SideRuns; kb: number; errors: number }> {
  const base = readFileSync(path.join(ROOT, 'config/policy.yaml'), 'utf8') + BENCH_RULES;
  const text = largePolicy(base);
  const shipped = await startGovgate(upstream, { policy: base });
  const large = await startGovgate(upstream, { policy: text }).catch((err: unknown) => {
    stopGovgate(shipped);
    throw err;
  });
  const metadata = JSON.stringify({ ...JSON.parse(METADATA), project: LARGE_PROJECT });
  const arms = [
    { url: shipped.url, key: shipped.key, script: path.join(workDir, 'post-shipped-project.lua'), pid: shipped.child.pid!, fresh: true },
    { url: large.url, key: large.key, script: path.join(workDir, 'post-large.lua'), pid: large.child.pid!, fresh: true },
  ];
  for (const arm of arms) wrkScript(arm.script, arm.key, metadata);
  try {
    const { runs, errors } = await sideBySide('large policy', arms, metadata);
    return { shipped: runs[0]!, large: runs[1]!, kb: text.length / 1024, errors };
  } finally {
    stopGovgate(shipped);
    stopGovgate(large);
  }
}

// ---------------------------------------------------------------- rows already in the audit file

const GROWTH_ROWS = (process.env.BENCH_GROWTH_ROWS ?? '0,1000000,5000000').split(',').map(Number);

interface GrowthArm extends SideRuns { readonly rows: number; readonly prefillS: number; readonly fileMiB: number }

/**
 * One gateway (as G, on B's core) per size in GROWTH_ROWS, each started on an
 * audit file that already holds that many decisions and as many outcomes
 * (test/bench/prefill.ts: chained, spread over the 30 days before the run,
 * indexes built afterwards), all sent the same requests.
 */
async function growthPhase(upstream: string, workDir: string): Promise<{ arms: GrowthArm[]; errors: number }> {
  const started: { gateway: Govgate; rows: number; prefillS: number; fileMiB: number }[] = [];
  try {
    for (const rows of GROWTH_ROWS) {
      const t0 = performance.now();
      const gateway = await startGovgate(upstream, { prefillRows: rows });
      const fileMiB = statSync(path.join(gateway.dir, 'data/audit.db')).size / 2 ** 20;
      started.push({ gateway, rows, prefillS: (performance.now() - t0) / 1000, fileMiB });
      console.error(`bench: growth: gateway on ${fmt(rows)} rows started (${fmt(started.at(-1)!.prefillS, 1)} s, ${fmt(fileMiB)} MiB)`);
    }
    const arms = started.map(({ gateway }, i) => {
      const script = path.join(workDir, `post-growth-${i}.lua`);
      wrkScript(script, gateway.key);
      return { url: gateway.url, key: gateway.key, script, pid: gateway.child.pid!, fresh: true };
    });
    const { runs, errors } = await sideBySide('growth', arms);
    return { arms: started.map((s, i) => ({ ...runs[i]!, rows: s.rows, prefillS: s.prefillS, fileMiB: s.fileMiB })), errors };
  } finally {
    for (const { gateway } of started) stopGovgate(gateway);
  }
}

function stopGovgate(gateway: Govgate): void {
  gateway.child.kill('SIGKILL');
  rmSync(gateway.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- audit writer alone

/** The gateway's AuditWriter on this thread, `perTurn` decisions a turn (v7 ids, as the gateway mints them), each turn waiting for its commit. */
async function auditWriterRowsPerSecond(perTurn: number): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-bench-audit-'));
  const file = path.join(dir, 'audit.db');
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  const writer = new AuditWriter(db, new StoreFile(file), { onCommit: () => {}, onFailure: (err) => { throw err; } });
  const row = (): DecisionRow => ({
    id: uuidv7(), customer_id: 'bench', api_key_id: 'key_bench', model: 'gpt-4o-mini',
    operation: 'chat.completions', meta: JSON.stringify({ metadata: { department: 'engineering' }, stream: false, max_tokens: 256, messages: 2, tools: null, body_bytes: 1024 }),
    risk_score: 0, allowed: 1, reason: 'allowed', created_at: sqliteTime(), policy_hash: 'a'.repeat(64), causes: '[]',
  });
  const started = performance.now();
  for (let i = 0; i < AUDIT_ROWS; i += perTurn) {
    const turn: Promise<void>[] = [];
    for (let j = i; j < Math.min(i + perTurn, AUDIT_ROWS); j++) turn.push(writer.record(row()));
    await Promise.all(turn);
  }
  const seconds = (performance.now() - started) / 1000;
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return AUDIT_ROWS / seconds;
}

// ---------------------------------------------------------------- statistics

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const median = (values: number[]) => percentile(values, 50);
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const runStarted = performance.now();
  console.error('bench: building …');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  loadGenerator = ensureWrk() ? 'wrk' : 'autocannon';

  const upstream = await startProcess(['--import', 'tsx', 'test/bench/bench-upstream.ts'], PIN.upstream, { readyFrom: 'stdout', ready: /^(\d+)\n/ });
  const upstreamUrl = `http://127.0.0.1:${upstream.match[1]}`;
  const bare = await startProcess(['--import', 'tsx', 'test/bench/bare-proxy.ts', `${upstreamUrl}/v1`], PIN.proxy, { readyFrom: 'stdout', ready: /^(\d+)\n/ });
  const gov = await startGovgate(`${upstreamUrl}/v1`);
  const gov2 = await startGovgate(`${upstreamUrl}/v1`, { twoCores: true });
  const urls: Record<Arm, string> = { D: upstreamUrl, B: `http://127.0.0.1:${bare.match[1]}`, G: gov.url, G2: gov2.url };
  const pids = { B: bare.child.pid!, G: gov.child.pid!, G2: gov2.child.pid! };
  const workDir = mkdtempSync(path.join(tmpdir(), 'govgate-bench-wrk-'));
  const scripts: Record<Arm, string> = { D: path.join(workDir, 'post.lua'), B: path.join(workDir, 'post.lua'), G: path.join(workDir, 'post.lua'), G2: path.join(workDir, 'post-g2.lua') };
  const keys: Record<Arm, string> = { D: gov.key, B: gov.key, G: gov.key, G2: gov2.key };
  wrkScript(scripts.G, gov.key);
  wrkScript(scripts.G2, gov2.key);
  scriptFile = scripts.G;
  console.error(`bench: load generator ${loadGenerator}; pinning ${hasTaskset ? `upstream+load on core ${PIN.upstream}, proxy (B, G, G2's event loop) on core ${PIN.proxy}, G2's other threads on ${PIN.twoCores}` : 'none (no taskset)'}`);

  const tput = noArms<number[]>(() => []);
  const cpuUs = noArms<number[]>(() => []);
  const p50 = noArms<number[]>(() => []);
  const p99 = noArms<number[]>(() => []);
  let errors = 0;
  for (const arm of ARMS) await load(urls[arm], 32, keys[arm], scripts[arm], METADATA, WARMUP_SECONDS);
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    const warm = round < WARMUP_ROUNDS;
    for (const arm of ARMS) {
      const pid = arm === 'D' ? null : pids[arm];
      const before = pid === null ? 0 : cpuNs(pid);
      const r = await load(urls[arm], 32, keys[arm], scripts[arm]);
      if (!warm) {
        tput[arm].push(r.rps);
        if (pid !== null) cpuUs[arm].push((cpuNs(pid) - before) / 1000 / r.requests);
        errors += r.errors;
      }
    }
    for (const arm of ARMS) {
      const r = await load(urls[arm], 1, keys[arm], scripts[arm]);
      if (!warm) { p50[arm].push(r.p50us); p99[arm].push(r.p99us); errors += r.errors; }
    }
    console.error(`bench: round ${round + 1}/${WARMUP_ROUNDS + ROUNDS}${warm ? ' (warm-up)' : ''}: ` +
      ARMS.map((a) => `${a} ${fmt(tput[a].at(-1) ?? NaN)} req/s ${a === 'D' ? '' : `${fmt(cpuUs[a].at(-1) ?? NaN)} µs CPU/req `}p50 ${fmt(p50[a].at(-1) ?? NaN)} µs`).join(', '));
  }
  const rss = { B: peakRssMb(pids.B), G: peakRssMb(pids.G), G2: peakRssMb(pids.G2) };

  const largeRun = await largePolicyPhase(`${upstreamUrl}/v1`, workDir);
  errors += largeRun.errors;

  const stream = noArms<StreamSample[]>(() => []);
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (const arm of ARMS) {
      const samples = await streams(urls[arm], keys[arm]);
      if (round >= WARMUP_ROUNDS) stream[arm].push(...samples);
    }
  }
  console.error('bench: streaming done');

  const flight = noArms<number[]>(() => []);
  const flightOk = { G: 0, G2: 0 };
  let flightTotal = 0;
  let flightPeak = 0;
  // A warm-up round as in every other phase: in a probe, a gateway's first bursts of 500 after other
  // work took 5 to 10 ms longer at p50 than the ones after, at 1 s of upstream delay each.
  for (let round = 0; round < WARMUP_ROUNDS + IN_FLIGHT_ROUNDS; round++) {
    for (const arm of ARMS) {
      const r = await inFlight(urls[arm], keys[arm]);
      if (round >= WARMUP_ROUNDS) flight[arm].push(...r.latenciesMs);
      if (arm === 'G' || arm === 'G2') flightOk[arm] += r.ok;
      if (arm === 'G') { flightTotal += IN_FLIGHT; flightPeak = Math.max(flightPeak, r.peak); }
    }
  }
  console.error('bench: in-flight done');

  const paused = await afterPauses(urls, keys);
  console.error('bench: requests after pauses done');

  // Medians of three runs each, interleaved: one run of a few seconds is at the mercy of a neighbour.
  const writerRuns: { big: number[]; one: number[] } = { big: [], one: [] };
  for (let run = 0; run < WRITER_RUNS; run++) {
    writerRuns.big.push(await auditWriterRowsPerSecond(1000));
    writerRuns.one.push(await auditWriterRowsPerSecond(1));
  }
  const auditBig = median(writerRuns.big);
  const auditOne = median(writerRuns.one);

  // Last: it writes gigabytes, which the writer-alone figures above should not share the disk with.
  const growth = await growthPhase(`${upstreamUrl}/v1`, workDir);
  errors += growth.errors;

  // ------------------------------------------------------------ figures
  const T = { D: median(tput.D), B: median(tput.B), G: median(tput.G), G2: median(tput.G2) };
  const C = { B: median(cpuUs.B), G: median(cpuUs.G), G2: median(cpuUs.G2) };
  const L50 = { D: median(p50.D), B: median(p50.B), G: median(p50.G), G2: median(p50.G2) };
  const L99 = { D: median(p99.D), B: median(p99.B), G: median(p99.G), G2: median(p99.G2) };
  const ttfc = (arm: Arm, p: number) => percentile(stream[arm].map((s) => s.ttfcMs * 1000), p);
  const gaps = (arm: Arm, p: number) => percentile(stream[arm].flatMap((s) => s.gapsMs.map((g) => g * 1000)), p);
  const delivery = (arm: Arm, p: number) => percentile(stream[arm].flatMap((s) => s.deliveryUs), p);
  const events = (arm: Arm) => stream[arm].reduce((n, s) => n + s.events, 0);
  const reads = (arm: Arm) => stream[arm].reduce((n, s) => n + s.reads, 0);
  const sameEvents = (arm: Arm) => events(arm) === events('D') && stream[arm].every((s) => s.events === stream.D[0]?.events);
  const added = (arm: 'G' | 'G2') => (median(flight[arm]) - median(flight.D)) * 1000;
  const bareFlightAdded = (median(flight.B) - median(flight.D)) * 1000;
  const bareGapP99 = gaps('B', 99) - gaps('D', 99);
  const ttfcAdded = (arm: 'G' | 'G2') => ttfc(arm, 50) - ttfc('B', 50);
  const gapAdded = (arm: 'G' | 'G2') => gaps(arm, 99) - gaps('B', 99);
  const both = (f: (arm: 'G' | 'G2') => number, digits = 0) => `${fmt(f('G'), digits)} / ${fmt(f('G2'), digits)}`;
  const perArm = (v: Record<Arm, number>, digits = 0) => ARMS.map((a) => fmt(v[a], digits)).join(' / ');

  const largeRatio = pairedRatio(largeRun.large.rps, largeRun.shipped.rps);
  const largeRatioCpu = pairedRatio(largeRun.shipped.cpuUs, largeRun.large.cpuUs);
  const growthFirst = growth.arms[0]!;
  const growthLast = growth.arms.at(-1)!;
  const growthSizes = growth.arms.map((a) => fmt(a.rows)).join(' / ');
  const growthRatio = pairedRatio(growthLast.rps, growthFirst.rps);

  const rows: [string, string, string, boolean | null][] = [
    ['Throughput, 32 connections (req/s): D / B / G / G2', perArm(T), '', null],
    ['1. CPU per request, all threads (µs): B / G / G2', `${fmt(C.B, 1)} / ${fmt(C.G, 1)} / ${fmt(C.G2, 1)}`, '', null],
    ['1. Added CPU per request, G − B / G2 − B (µs)', `${fmt(C.G - C.B, 1)} / ${fmt(C.G2 - C.B, 1)}`, '≤ 75 (G)', C.G - C.B <= 75],
    ['2. Throughput ratio G/B, everything on one core', fmt(T.G / T.B, 3), '≥ 0.6', T.G / T.B >= 0.6],
    ['2. Throughput ratio G2/B, the writer thread allowed onto the second core', fmt(T.G2 / T.B, 3), '≥ 0.85', T.G2 / T.B >= 0.85],
    ['Latency p50, 1 connection (µs): D / B / G / G2', perArm(L50), '', null],
    ['Latency p99, 1 connection (µs): D / B / G / G2', perArm(L99), '', null],
    ['3. One connection, G − B / G2 − B p50 (µs), the decision committed before forwarding', both((a) => L50[a] - L50.B), '≤ 150 (G)', L50.G - L50.B <= 150],
    ['Streaming: time to first chunk p50 / p99 (µs): D / B / G / G2', ARMS.map((a) => `${fmt(ttfc(a, 50))} / ${fmt(ttfc(a, 99))}`).join(' · '), '', null],
    ['4. Streaming: added time to first chunk p50 over B, G / G2 (µs)', both(ttfcAdded), '≤ 500 (G)', ttfcAdded('G') <= 500],
    ['4. Streaming: events received D / B / G / G2 (reads)', ARMS.map((a) => `${events(a)} (${reads(a)})`).join(' / '), 'identical', sameEvents('B') && sameEvents('G') && sameEvents('G2')],
    ['Streaming: inter-chunk gap p50 / p99 (µs): D / B / G / G2', ARMS.map((a) => `${fmt(gaps(a, 50))} / ${fmt(gaps(a, 99))}`).join(' · '), '', null],
    ['4. Streaming: added inter-chunk gap p99 over B, G / G2 (µs); the limit is B\'s own over D', both(gapAdded), `≤ ${fmt(bareGapP99)} (G)`, gapAdded('G') <= Math.max(bareGapP99, 0)],
    ['Streaming: per-event delivery latency p50 / p99 (µs): D / B / G / G2', ARMS.map((a) => `${fmt(delivery(a, 50))} / ${fmt(delivery(a, 99))}`).join(' · '), '', null],
    [`5. ${IN_FLIGHT} in flight, upstream delays 1 s: success G / G2 (peak in flight)`, `${flightOk.G}/${flightTotal} / ${flightOk.G2}/${flightTotal} (${flightPeak})`, '100 %', flightOk.G === flightTotal && flightOk.G2 === flightTotal],
    [`5. ${IN_FLIGHT} in flight: p50 (ms): D / B / G / G2`, ARMS.map((a) => fmt(median(flight[a]), 2)).join(' / '), '', null],
    [`5. ${IN_FLIGHT} in flight: added p50 over D, G / G2 (µs); B's own: ${fmt(bareFlightAdded)}`, both(added), '≤ 1000 (G)', added('G') <= 1000],
    [`A request after ${PAUSE_MS} ms of nothing, 1 connection: latency p50 / p90 (µs): D / B / G / G2`, ARMS.map((a) => `${fmt(percentile(paused[a], 50))} / ${fmt(percentile(paused[a], 90))}`).join(' · '), '', null],
    [`A request after ${PAUSE_MS} ms of nothing: added p50 over B, G / G2 (µs)`, both((a) => percentile(paused[a], 50) - percentile(paused.B, 50)), '', null],
    [`6. Audit writer alone, 1000 decisions a turn, v7 ids (rows/s, median of ${WRITER_RUNS} runs); the index costs: \`npm run bench:writer\`, below`, fmt(auditBig), '≥ 50000', auditBig >= 50_000],
    [`Audit writer alone, 1 decision a turn (rows/s, median of ${WRITER_RUNS} runs): a lone commit's cost`, fmt(auditOne), '', null],
    [`8. Throughput, 32 connections, G on an audit file already holding ${growthSizes} decisions + as many outcomes (req/s)`, growth.arms.map((a) => fmt(median(a.rps))).join(' / '), '', null],
    [`8. CPU per request, all threads (µs): ${growthSizes} rows`, growth.arms.map((a) => fmt(median(a.cpuUs), 1)).join(' / '), '', null],
    [`8. Throughput ratio, ${fmt(growthLast.rows)} rows / ${fmt(growthFirst.rows)} (median of the rounds' ratios; ${growth.arms.slice(1, -1).map((a) => `${fmt(a.rows)}: ${fmt(pairedRatio(a.rps, growthFirst.rps), 3)}; `).join('')}CPU per request, ${fmt(growthFirst.rows)} / ${fmt(growthLast.rows)}: ${fmt(pairedRatio(growthFirst.cpuUs, growthLast.cpuUs), 3)})`, fmt(growthRatio, 3), '≥ 0.90', growthRatio >= 0.9],
    [`10. Throughput, 32 connections, requests with metadata.project (req/s): G shipped policy / G ${LARGE_CUSTOMERS} customers + ${LARGE_RULES} rules (${fmt(largeRun.kb)} KB)`, `${fmt(median(largeRun.shipped.rps))} / ${fmt(median(largeRun.large.rps))}`, '', null],
    ['10. CPU per request, all threads (µs): shipped policy / large policy', `${fmt(median(largeRun.shipped.cpuUs), 1)} / ${fmt(median(largeRun.large.cpuUs), 1)}`, '', null],
    [`10. Throughput ratio, ${LARGE_RULES}-rule policy / shipped policy (median of the rounds' ratios; CPU per request, shipped / large: ${fmt(largeRatioCpu, 3)})`, fmt(largeRatio, 3), '≥ 0.90', largeRatio >= 0.9],
    ['Peak RSS (MB): B / G / G2', `${fmt(rss.B, 1)} / ${fmt(rss.G, 1)} / ${fmt(rss.G2, 1)}`, '', null],
    ['Load-generator errors (all arms)', String(errors), '0', errors === 0],
  ];

  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  const md = [
    '# govgate benchmark',
    '',
    `- Date: ${new Date().toISOString()}; whole run ${fmt((performance.now() - runStarted) / 60_000, 1)} min`,
    `- Command: \`npm run bench\` (BENCH_ROUNDS=${ROUNDS}, BENCH_SECONDS=${LOAD_SECONDS}, BENCH_WARMUP_SECONDS=${WARMUP_SECONDS}, BENCH_GROWTH_ROWS=${GROWTH_ROWS.join(',')})`,
    `- Machine: ${cpu}, ${cores} cores, ${fmt(totalmem() / 1024 ** 3, 1)} GiB, Node ${process.version}, ${process.platform}; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')} (shared: other work runs on these cores)`,
    `- Load generator: ${loadGenerator}; pinning: ${hasTaskset ? `mock upstream and load generator on core ${PIN.upstream}, proxy under test (B, G, G2's event loop) on core ${PIN.proxy}, via taskset` : 'none (taskset not available)'}`,
    '- Arms: D = client → mock upstream; B = client → bare undici pass-through (the gateway\'s forwarding code, no auth/policy/audit) → mock; G = client → govgate (real key, shipped policy + 10 rules, audit on, synchronous NORMAL as shipped) → mock, the whole process on B\'s core, where it keeps its audit writer on the event loop; G2 = the same gateway started on both cores, its audit writer on its own thread, then its main thread (the event loop) pinned back to B\'s core, so only its other threads started before it listened (writer, WAL checkpointer, V8\'s helpers) may use the second core, which the mock and the load generator also use',
    '- CPU per request: the CPU time of all the process\'s threads (the sum of /proc/PID/task/*/schedstat) over each 32-connection run, divided by the requests wrk completed in it; median of rounds',
    `- Large policy: the shipped policy + 10 rules grown by ${LARGE_CUSTOMERS} customers and ${LARGE_RULES} rules on \`metadata.project\` and a model glob (test/bench/policy.ts), against the shipped policy + 10 rules, in two more gateways started together for this phase (one core each, as G; not G itself, whose process is older and audit file bigger by then); both sent the same requests with \`project: ${LARGE_PROJECT}\` (one generated rule matches), warmed up as the Method line says, ${ROUNDS} interleaved rounds after ${WARMUP_ROUNDS} warm-up; ratios are medians of each round's ratio, the two runs of a round being back to back`,
    `- Table growth: one more gateway per size (${growthSizes} decisions and as many outcomes already in its audit file, chained, spread over the 30 days before the run, indexes built after the rows: test/bench/prefill.ts), each as G (one core, shipped policy + 10 rules), all sent G's requests, each warmed up alone as the Method line says, ${ROUNDS} rounds after ${WARMUP_ROUNDS} warm-up with the order rotated each round; every file also grows by what its own runs write`,
    `- Method: every process first gets ${WARMUP_SECONDS} s of 32-connection load alone, then ${WARMUP_ROUNDS} warm-up round discarded, then ${ROUNDS} interleaved rounds (D, B, G, G2, D, B, G, G2 …); figures are medians of rounds; ${LOAD_SECONDS} s per load run; ${STREAMS_PER_ROUND} concurrent streams of 64 events 20 ms apart per arm per round; ${IN_FLIGHT} requests with a 1 s upstream delay started evenly over ${IN_FLIGHT_RAMP_MS} ms (so all are in flight together), ${WARMUP_ROUNDS} warm-up round discarded then ${IN_FLIGHT_ROUNDS} rounds (success counted in all); ${PAUSED_REQUESTS} requests per arm one at a time on a kept-alive connection, each ${PAUSE_MS} ms after the last answer (arms interleaved, ${PAUSE_WARMUP} more discarded first)`,
    '- Numbers in the first column are the targets of issue 18; "met" judges G, the one-core layout B is measured in, except where the target names G2',
    '',
    '| figure | value | target | met |',
    '| --- | --- | --- | --- |',
    ...rows.map(([name, value, target, ok]) => `| ${name} | ${value} | ${target} | ${ok === null ? '' : ok ? 'yes' : '**no**'} |`),
    '',
  ].join('\n');
  writeMainSection(md);
  process.stdout.write(`${md}\n`);

  rmSync(workDir, { recursive: true, force: true });
  rmSync(gov.dir, { recursive: true, force: true });
  rmSync(gov2.dir, { recursive: true, force: true });
}

/** Replaces what comes before the sections other benchmarks write (`## Audit writer: …`, by `npm run bench:writer`), keeping them. */
function writeMainSection(md: string): void {
  const file = path.join(ROOT, 'test/bench/RESULTS.md');
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const rest = old.search(/^## /m);
  writeFileSync(file, rest < 0 ? md : `${md}\n${old.slice(rest)}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
