/**
 * `npm run bench:writer`: the audit writer alone (issue 18, points 6 and 8), on this machine.
 *  1. Index costs: the real AuditWriter, set up as the gateway sets it up (checkpoints in the
 *     WalCheckpointer thread, synchronous NORMAL), writes BENCH_WRITER_REQUESTS requests (a decision
 *     row and an outcome row each) into a fresh file: with every shipped index, with each secondary
 *     index of usagelog / usagelog_outcome dropped in turn, with none, with the set BENCH_WRITER_PROPOSED names (if any), and
 *     with random v4 ids instead of v7. Configurations are interleaved round by round; medians.
 *  2. Table growth: the same writer on top of 0, 1M and 5M rows already in the file
 *     (BENCH_WRITER_PREFILL), rounds interleaved; bytes on disk per request from the file's growth
 *     after a checkpoint, and per table and index from dbstat.
 *  3. What each index buys: every query of gateway/ that reads usagelog or usagelog_outcome, its plan
 *     and time on the first prefilled file, with all indexes and with each dropped (in a transaction
 *     that is rolled back).
 * Writes the section "Audit writer: index costs and table growth" of test/bench/RESULTS.md (the rest
 * of the file is left alone) and prints it.
 *
 * Environment: BENCH_WRITER_REQUESTS (30000), BENCH_WRITER_ROUNDS (5), BENCH_WRITER_PER_TURN (1000),
 * BENCH_WRITER_PREFILL (0,1000000,5000000), BENCH_WRITER_PHASES (indexes,growth,queries),
 * BENCH_WRITER_PROPOSED (indexes the proposed set drops, comma-separated), BENCH_WRITER_DIR (os.tmpdir()).
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { v4 as uuidv4, v7 as uuidv7 } from 'uuid';
import { AuditWriter, type DecisionRow, type OutcomeRow } from '../../gateway/audit/audit-writer.js';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { WalCheckpointer } from '../../gateway/audit/wal-checkpointer.js';
import { syntheticDecision, syntheticOutcome } from '../helpers/audit-rows.js';
import { PREFILL_DAYS, prefillAuditFile } from './prefill.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const REQUESTS = Number(process.env.BENCH_WRITER_REQUESTS ?? 30_000);
const ROUNDS = Number(process.env.BENCH_WRITER_ROUNDS ?? 5);
const PER_TURN = Number(process.env.BENCH_WRITER_PER_TURN ?? 1000);
const PREFILL = (process.env.BENCH_WRITER_PREFILL ?? '0,1000000,5000000').split(',').map(Number);
const PHASES = new Set((process.env.BENCH_WRITER_PHASES ?? 'indexes,growth,queries').split(','));
const PROPOSED = (process.env.BENCH_WRITER_PROPOSED ?? '').split(',').filter(Boolean);
/** The gateway's own figures (app.ts, gateway-config.ts): busy_timeout 0, WAL limit 64 MiB, retention 90 days. */
const WAL_LIMIT_BYTES = 64 * 1024 * 1024;
const RETENTION_DAYS = 90;
const CHECKPOINTER_START_MS = 1000;
/** Diagnostics: the writer connection's cache_size in KiB (the gateway leaves SQLite's default, 2000), and indexes the growth phase drops. */
const CACHE_KIB = process.env.BENCH_WRITER_CACHE_KIB === undefined ? null : Number(process.env.BENCH_WRITER_CACHE_KIB);
const GROWTH_DROP = (process.env.BENCH_WRITER_GROWTH_DROP ?? '').split(',').filter(Boolean);

const dir = mkdtempSync(path.join(process.env.BENCH_WRITER_DIR ?? tmpdir(), 'govgate-bench-writer-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;
const freshPath = () => path.join(dir, `w${fileSeq++}.db`);
const removeDb = (file: string) => ['', '-wal', '-shm'].forEach((s) => rmSync(`${file}${s}`, { force: true }));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
const log = (text: string) => process.stderr.write(`bench:writer: ${text}\n`);

// ---------------------------------------------------------------- the schema's secondary indexes

interface IndexDef { readonly name: string; readonly table: string; readonly sql: string }

/** Read from a freshly migrated file, so the bench follows the schema rather than a copy of it. */
function shippedIndexes(): { secondary: IndexDef[]; implicit: string[] } {
  const file = freshPath();
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  const all = db.prepare("SELECT name, tbl_name AS 'table', sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('usagelog', 'usagelog_outcome') ORDER BY tbl_name, name").all() as { name: string; table: string; sql: string | null }[];
  db.close();
  removeDb(file);
  return { secondary: all.filter((i): i is IndexDef => i.sql !== null), implicit: all.filter((i) => i.sql === null).map((i) => i.name) };
}

// ---------------------------------------------------------------- one measured run

interface Run {
  readonly rowsPerS: number;
  readonly requestsPerS: number;
  /** Growth of the file (after a TRUNCATE checkpoint) per request, in bytes. */
  readonly bytesPerRequest: number;
  readonly commits: number;
  readonly maxCommitMs: number;
}

/** 1400 = lcm(7, 50, 200): every mix of blocked, customer and key syntheticDecision makes. */
const TEMPLATES = 1400;
const decisionTemplates = Array.from({ length: TEMPLATES }, (_, i) => syntheticDecision(i, ''));
const outcomeTemplate = syntheticOutcome(0, '');

function fileBytes(db: Db): number {
  db.pragma('wal_checkpoint(TRUNCATE)');
  const pages = db.pragma('page_count', { simple: true }) as number;
  return pages * (db.pragma('page_size', { simple: true }) as number);
}

/**
 * Writes `requests` requests with the gateway's writer into `file` (created if missing), dropping
 * `drop` first: each turn of the event loop records PER_TURN decisions, then their outcomes, and
 * waits for the decisions' group commit, as the gateway's request handlers do.
 */
async function writeRequests(file: string, ids: 'v4' | 'v7', requests: number, drop: readonly string[] = [], onDone?: (db: Db) => void): Promise<Run> {
  const db = openDatabase(file, { synchronous: 'NORMAL', retentionDays: RETENTION_DAYS, checkpointsElsewhere: true, busyTimeoutMs: 0 });
  if (CACHE_KIB !== null) db.pragma(`cache_size = -${CACHE_KIB}`);
  for (const name of drop) db.exec(`DROP INDEX IF EXISTS ${name}`);
  const before = fileBytes(db);
  const checkpointer = new WalCheckpointer(file, WAL_LIMIT_BYTES, {
    onError(code) { throw new Error(`checkpoint failed: ${code}`); },
    onPinned() {},
    onDied() { throw new Error('the checkpoint thread died'); },
  });
  // The thread takes ~0.4 s to load (tsx in a worker); that start-up is no part of the writer's cost.
  await new Promise((resolve) => setTimeout(resolve, CHECKPOINTER_START_MS));
  let commits = 0;
  let maxCommitMs = 0;
  const writer = new AuditWriter(db, new StoreFile(file), {
    onCommit(ms) {
      commits++;
      maxCommitMs = Math.max(maxCommitMs, ms);
    },
    onFailure(err) { throw err; },
  });
  const newId = ids === 'v7' ? uuidv7 : uuidv4;
  const idList = Array.from({ length: requests }, () => newId());
  const started = performance.now();
  for (let i = 0; i < requests; i += PER_TURN) {
    const createdAt = sqliteTime();
    const turn: Promise<void>[] = [];
    const end = Math.min(i + PER_TURN, requests);
    for (let j = i; j < end; j++) turn.push(writer.record({ ...decisionTemplates[j % TEMPLATES]!, id: idList[j]!, created_at: createdAt } satisfies DecisionRow));
    for (let j = i; j < end; j++) writer.recordOutcome({ ...outcomeTemplate, log_id: idList[j]!, created_at: createdAt } satisfies OutcomeRow);
    await Promise.all(turn);
  }
  writer.flush();
  const seconds = (performance.now() - started) / 1000;
  await checkpointer.stop();
  const after = fileBytes(db);
  onDone?.(db);
  db.close();
  checkpointer.release();
  return { rowsPerS: (2 * requests) / seconds, requestsPerS: requests / seconds, bytesPerRequest: (after - before) / requests, commits, maxCommitMs };
}

// ---------------------------------------------------------------- dbstat

/** Bytes per btree (table or index) of usagelog / usagelog_outcome, from the dbstat virtual table. */
function btreeBytes(db: Db): Map<string, number> {
  const rows = db.prepare("SELECT name, sum(pgsize) AS bytes FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name IN ('usagelog', 'usagelog_outcome')) GROUP BY name").all() as { name: string; bytes: number }[];
  return new Map(rows.map((r) => [r.name, r.bytes]));
}

// ---------------------------------------------------------------- phase 1: index costs

interface Config { readonly name: string; readonly drop: readonly string[]; readonly ids: 'v4' | 'v7' }

async function indexCosts(secondary: IndexDef[]): Promise<{ configs: Config[]; runs: Map<string, Run[]>; stat: Map<string, { bytes: Map<string, number>; requests: number }> }> {
  const configs: Config[] = [
    { name: 'shipped, v7 ids', drop: [], ids: 'v7' },
    { name: 'shipped, v4 ids', drop: [], ids: 'v4' },
    ...secondary.map((i) => ({ name: `without ${i.name}`, drop: [i.name], ids: 'v7' as const })),
    ...(PROPOSED.length > 0 ? [{ name: `proposed: without ${PROPOSED.join(', ')}`, drop: PROPOSED, ids: 'v7' as const }] : []),
    { name: 'no secondary index (floor)', drop: secondary.map((i) => i.name), ids: 'v7' },
  ];
  const runs = new Map(configs.map((c) => [c.name, [] as Run[]]));
  const stat = new Map<string, { bytes: Map<string, number>; requests: number }>();
  log('warm-up run (discarded) …');
  {
    const f = freshPath();
    await writeRequests(f, 'v7', REQUESTS);
    removeDb(f);
  }
  for (let r = 0; r < ROUNDS; r++) {
    // Rotated each round, so no configuration always runs first or right after the slowest.
    const order = configs.map((_, k) => configs[(k + r) % configs.length]!);
    for (const c of order) {
      const f = freshPath();
      const last = r === ROUNDS - 1;
      const run = await writeRequests(f, c.ids, REQUESTS, c.drop, last && c.drop.length === 0 ? (db) => stat.set(c.name, { bytes: btreeBytes(db), requests: REQUESTS }) : undefined);
      removeDb(f);
      runs.get(c.name)!.push(run);
      log(`round ${r + 1}/${ROUNDS} ${c.name}: ${fmt(run.rowsPerS)} rows/s`);
    }
  }
  return { configs, runs, stat };
}

// ---------------------------------------------------------------- phase 2: growth

interface Growth { readonly prefill: number; readonly prefillS: number; readonly runs: Run[]; readonly startBytes: number; readonly endRows: number }

async function growth(): Promise<{ sizes: Growth[]; bases: Map<number, string> }> {
  const bases = new Map<number, string>();
  const sizes: Growth[] = [];
  for (const n of PREFILL) {
    if (n === 0) {
      sizes.push({ prefill: 0, prefillS: 0, runs: [], startBytes: 0, endRows: 0 });
      continue;
    }
    const file = freshPath();
    log(`prefilling ${fmt(n)} rows …`);
    const { seconds } = prefillAuditFile(file, n, (done) => process.stderr.write(`\rbench:writer: prefilled ${fmt(done)} of ${fmt(n)} rows`));
    process.stderr.write('\n');
    bases.set(n, file);
    sizes.push({ prefill: n, prefillS: seconds, runs: [], startBytes: statSync(file).size, endRows: n });
  }
  log('warm-up run (discarded) …');
  {
    const f = freshPath();
    await writeRequests(f, 'v7', REQUESTS);
    removeDb(f);
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = sizes.map((_, k) => sizes[(k + r) % sizes.length]!);
    for (const g of order) {
      // An empty table is a fresh file every round; a prefilled one grows by REQUESTS each round.
      const f = g.prefill === 0 ? freshPath() : bases.get(g.prefill)!;
      const run = await writeRequests(f, 'v7', REQUESTS, GROWTH_DROP);
      if (g.prefill === 0) removeDb(f);
      g.runs.push(run);
      log(`round ${r + 1}/${ROUNDS} on ${fmt(g.prefill)} rows: ${fmt(run.rowsPerS)} rows/s, ${fmt(run.bytesPerRequest)} bytes/request`);
    }
  }
  for (const g of sizes) (g as { endRows: number }).endRows = g.prefill + (g.prefill === 0 ? REQUESTS : ROUNDS * REQUESTS);
  return { sizes, bases };
}

// ---------------------------------------------------------------- phase 3: what each index buys

interface Query { readonly name: string; readonly source: string; readonly sql: string; readonly params: (t: Times) => Record<string, unknown> }
interface Times { hourFrom: string; hourTo: string; minute: string; month: string; day: string; id: string }

/** Copied from gateway/ (the files named); retention, verify and the fleet shipper read by rowid only. */
const QUERIES: Query[] = [
  { name: 'dashboard hourCounts', source: 'admin/admin-queries.ts', params: (t) => ({ a: t.hourFrom, b: t.hourTo }),
    sql: 'SELECT allowed, min(CAST(risk_score / 10 AS INTEGER), 9) AS bucket, count(*) AS n FROM usagelog WHERE created_at >= @a AND created_at < @b GROUP BY allowed, bucket' },
  { name: 'dashboard groups', source: 'admin/admin-queries.ts', params: (t) => ({ a: t.hourFrom, b: t.hourTo }),
    sql: 'SELECT customer_id, model, count(*) AS requests, sum(allowed = 0) AS blocked, sum(risk_score) AS risk_sum FROM usagelog WHERE created_at >= @a AND created_at < @b GROUP BY customer_id, model' },
  { name: 'dashboard tokens', source: 'admin/admin-queries.ts', params: (t) => ({ a: t.hourFrom, b: t.hourTo }),
    sql: 'SELECT u.customer_id, u.model, sum(o.total_tokens) AS tokens FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id WHERE u.created_at >= @a AND u.created_at < @b AND o.total_tokens IS NOT NULL GROUP BY u.customer_id, u.model' },
  { name: 'dashboard blockedCauses', source: 'admin/admin-queries.ts', params: (t) => ({ a: t.hourFrom, b: t.hourTo }),
    sql: 'SELECT causes, count(*) AS n FROM usagelog WHERE allowed = 0 AND created_at >= @a AND created_at < @b GROUP BY causes' },
  { name: 'dashboard latest 100', source: 'admin/admin-queries.ts', params: () => ({ n: 100 }),
    sql: 'SELECT u.id, u.created_at, u.customer_id, u.api_key_id, u.model, u.operation, u.risk_score, u.allowed, u.reason, o.status, o.total_tokens FROM (SELECT * FROM usagelog ORDER BY created_at DESC LIMIT @n) u LEFT JOIN usagelog_outcome o ON o.log_id = u.id ORDER BY u.created_at DESC' },
  { name: 'limits restore: requests/minute', source: 'limits/restore-counters.ts', params: (t) => ({ a: t.minute }),
    sql: "SELECT customer_id, api_key_id, substr(created_at, 1, 16) AS minute, COUNT(*) AS n FROM usagelog WHERE created_at >= @a AND NOT (allowed = 0 AND reason LIKE 'limit%') GROUP BY customer_id, api_key_id, minute" },
  { name: 'limits restore: tokens/minute', source: 'limits/restore-counters.ts', params: (t) => ({ a: t.minute }),
    sql: 'SELECT u.customer_id, u.api_key_id, substr(u.created_at, 1, 16) AS minute, SUM(o.total_tokens) AS n FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id WHERE u.created_at >= @a AND u.allowed = 1 AND o.total_tokens IS NOT NULL GROUP BY u.customer_id, u.api_key_id, minute' },
  { name: 'limits restore: tokens/day+month', source: 'limits/restore-counters.ts', params: (t) => ({ a: t.month }),
    sql: 'SELECT u.customer_id, u.api_key_id, substr(u.created_at, 1, 10) AS day, SUM(o.total_tokens) AS n FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id WHERE u.created_at >= @a AND u.allowed = 1 AND o.total_tokens IS NOT NULL GROUP BY u.customer_id, u.api_key_id, day' },
  { name: 'cli usage --since 1d --customer', source: 'cli/usage-command.ts', params: (t) => ({ cutoff: t.day, customer: 'customer-7' }),
    sql: "SELECT u.customer_id AS customer, u.model AS model, COUNT(*) AS requests, SUM(u.allowed = 0) AS blocked, COALESCE(SUM(o.prompt_tokens), 0) AS prompt_tokens, COALESCE(SUM(o.completion_tokens), 0) AS completion_tokens, COALESCE(SUM(o.total_tokens), 0) AS total_tokens FROM usagelog u LEFT JOIN usagelog_outcome o ON o.log_id = u.id WHERE u.created_at >= @cutoff AND (@customer IS NULL OR u.customer_id = @customer) AND json_extract(u.meta, '$.kind') IS NOT 'check' GROUP BY u.customer_id, u.model ORDER BY u.customer_id, u.model" },
  { name: 'audit export --since/--until: decisions', source: 'audit/export-trail.ts', params: (t) => ({ a: t.hourFrom, b: t.hourTo }),
    sql: 'SELECT min(rowid) AS first, max(rowid) AS last FROM usagelog WHERE created_at >= @a AND created_at < @b' },
  { name: 'audit export --since/--until: outcomes', source: 'audit/export-trail.ts', params: (t) => ({ a: t.hourFrom, b: t.hourTo }),
    sql: 'SELECT min(rowid) AS first, max(rowid) AS last FROM usagelog_outcome WHERE created_at >= @a AND created_at < @b' },
  { name: 'audit explain <id>: decision', source: 'cli/audit-explain-command.ts', params: (t) => ({ id: t.id }), sql: 'SELECT rowid, * FROM usagelog WHERE id = @id' },
  { name: 'audit explain <id>: outcome', source: 'cli/audit-explain-command.ts', params: (t) => ({ id: t.id }), sql: 'SELECT log_id, status, total_tokens FROM usagelog_outcome WHERE log_id = @id' },
];

interface QueryFigure { plan: string; ms: number }

function queryFigures(file: string, secondary: IndexDef[]): { rows: number; configs: { name: string; drop: string[] }[]; figures: Map<string, QueryFigure[]> } {
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  const rows = db.prepare('SELECT count(*) FROM usagelog').pluck().get() as number;
  const [firstAt, lastId] = [db.prepare('SELECT created_at FROM usagelog ORDER BY rowid LIMIT 1').pluck().get() as string, db.prepare('SELECT id FROM usagelog WHERE rowid = (SELECT max(rowid) / 2 FROM usagelog)').pluck().get() as string];
  const mid = new Date(Date.parse(`${firstAt.replace(' ', 'T')}Z`) + (PREFILL_DAYS / 2) * 86_400_000);
  const hour = Math.floor(mid.getTime() / 3_600_000) * 3_600_000;
  const now = new Date();
  const times: Times = {
    hourFrom: sqliteTime(new Date(hour)), hourTo: sqliteTime(new Date(hour + 3_600_000)),
    minute: sqliteTime(new Date(Math.floor(now.getTime() / 60_000) * 60_000 - 60_000)),
    month: sqliteTime(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))),
    day: sqliteTime(new Date(now.getTime() - 86_400_000)), id: lastId,
  };
  const configs = [{ name: 'shipped', drop: [] as string[] }, ...secondary.map((i) => ({ name: `without ${i.name}`, drop: [i.name] })), ...(PROPOSED.length > 0 ? [{ name: 'proposed', drop: PROPOSED }] : [])];
  const figures = new Map<string, QueryFigure[]>();
  for (const c of configs) {
    log(`queries ${c.name} …`);
    db.exec('BEGIN');
    try {
      for (const name of c.drop) db.exec(`DROP INDEX ${name}`);
      figures.set(c.name, QUERIES.map((q) => {
        const params = q.params(times);
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${q.sql}`).all(params) as { detail: string }[]).map((r) => r.detail).join(' · ');
        const stmt = db.prepare(q.sql);
        const ms: number[] = [];
        // Three runs, or one when a run takes over half a second.
        for (let k = 0; k < 3; k++) {
          const t0 = performance.now();
          stmt.all(params);
          ms.push(performance.now() - t0);
          if (ms[0]! > 500) break;
        }
        return { plan, ms: median(ms) };
      }));
    } finally {
      db.exec('ROLLBACK');
    }
  }
  db.close();
  return { rows, configs, figures };
}

// ---------------------------------------------------------------- report

const SECTION = '## Audit writer: index costs and table growth';

function writeSection(body: string): void {
  const file = path.join(ROOT, 'test/bench/RESULTS.md');
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(SECTION);
  let out: string;
  if (start < 0) out = `${text.trimEnd()}\n\n${body}`;
  else {
    const next = text.slice(start + SECTION.length).search(/\n#{1,2} /);
    out = `${text.slice(0, start)}${body}${next < 0 ? '' : text.slice(start + SECTION.length + next + 1)}`;
  }
  writeFileSync(file, out);
}

async function main(): Promise<void> {
  const { secondary, implicit } = shippedIndexes();
  const started = performance.now();
  const lines: string[] = [
    SECTION,
    '',
    `- Date: ${new Date().toISOString()}; machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average at start ${loadavg()[0]!.toFixed(1)} (other work shares the cores)`,
    `- Command: \`${['BENCH_WRITER_REQUESTS', 'BENCH_WRITER_ROUNDS', 'BENCH_WRITER_PER_TURN', 'BENCH_WRITER_PREFILL', 'BENCH_WRITER_PHASES', 'BENCH_WRITER_PROPOSED', 'BENCH_WRITER_CACHE_KIB', 'BENCH_WRITER_GROWTH_DROP'].filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]} `).join('')}npm run bench:writer\` (test/bench/writer.ts)`,
    `- Method: the real AuditWriter as the gateway runs it (synchronous NORMAL, auto-checkpoints off, the WalCheckpointer thread with the 64 MiB limit, retention guards on); each turn of the event loop records ${PER_TURN} decisions (syntheticDecision's mix: 50 customers, 200 keys, 1 in 7 blocked) and their ${PER_TURN} outcomes, and waits for the decisions' group commit; outcomes commit in their own batches (≥ 512: next timer). ${fmt(REQUESTS)} requests (${fmt(2 * REQUESTS)} rows) per run, timed from the first record to the last commit. Rows/s counts decision + outcome rows. One discarded warm-up run per phase, then ${ROUNDS} rounds with the configurations interleaved (order rotated each round); figures are medians (min–max in brackets).`,
    `- Shipped indexes: secondary ${secondary.map((i) => `\`${i.name}\``).join(', ')}; implicit (primary keys, not droppable) ${implicit.map((n) => `\`${n}\``).join(', ')}.`,
    '',
  ];
  const spread = (xs: number[]) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;

  if (PHASES.has('indexes')) {
    log('phase 1: index costs …');
    const { configs, runs, stat } = await indexCosts(secondary);
    const base = median(runs.get(configs[0]!.name)!.map((r) => r.rowsPerS));
    lines.push(
      '### Index costs (fresh file)',
      '',
      '| configuration | rows/s | requests/s | vs shipped v7 | µs per request vs shipped | bytes on disk per request |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...configs.map((c) => {
        const rs = runs.get(c.name)!;
        const rows = median(rs.map((r) => r.rowsPerS));
        const usPerReq = 2e6 / base - 2e6 / rows;
        return `| ${c.name} | ${spread(rs.map((r) => r.rowsPerS))} | ${fmt(rows / 2)} | ${rows >= base ? '+' : ''}${fmt(((rows - base) / base) * 100, 1)} % | ${c === configs[0] ? '' : fmt(usPerReq, 1)} | ${fmt(median(rs.map((r) => r.bytesPerRequest)))} |`;
      }),
      '',
      `"µs per request vs shipped": the shipped configuration's time per request minus this one's, i.e. what the dropped index (or v4 ids) costs each request; at the 50,000 rows/s target a request may take 40 µs in all.`,
      '',
    );
    for (const [name, { bytes, requests }] of stat) {
      const total = [...bytes.values()].reduce((a, b) => a + b, 0);
      lines.push(
        `Bytes on disk per request by btree (dbstat, ${name}, a file written by the writer with ${fmt(requests)} requests): ${[...bytes].sort((a, b) => b[1] - a[1]).map(([n, b]) => `${n} ${fmt(b / requests)}`).join(', ')}; total ${fmt(total / requests)}.`,
        '',
      );
    }
  }

  let bases = new Map<number, string>();
  if (PHASES.has('growth')) {
    log('phase 2: growth …');
    const g = await growth();
    bases = g.bases;
    const empty = g.sizes.find((s) => s.prefill === 0);
    const emptyRate = empty ? median(empty.runs.map((r) => r.rowsPerS)) : NaN;
    lines.push(
      '### Throughput against rows already in the file (shipped indexes, v7 ids)',
      '',
      '| rows already in the file | prefill time | file at start | rows/s | vs empty | bytes on disk per request (file growth after a TRUNCATE checkpoint) | longest commit (median of rounds) |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...g.sizes.map((s) => {
        const rate = median(s.runs.map((r) => r.rowsPerS));
        const rows = s.prefill === 0 ? '0 (fresh file each round)' : `${fmt(s.prefill)} decisions + ${fmt(s.prefill)} outcomes (+${fmt(REQUESTS)} per round, ${fmt(s.endRows)} at the end)`;
        return `| ${rows} | ${s.prefill === 0 ? '' : `${fmt(s.prefillS, 1)} s`} | ${s.prefill === 0 ? '' : `${fmt(s.startBytes / 2 ** 20)} MiB`} | ${spread(s.runs.map((r) => r.rowsPerS))} | ${s.prefill === 0 ? '' : `${rate >= emptyRate ? '+' : ''}${fmt(((rate - emptyRate) / emptyRate) * 100, 1)} %`} | ${fmt(median(s.runs.map((r) => r.bytesPerRequest)))} | ${fmt(median(s.runs.map((r) => r.maxCommitMs)), 1)} ms |`;
      }),
      '',
      'Prefilled rows are written with INSERT … SELECT (chained like the gateway\'s, v7-shaped ids whose time is their created_at, spread over the 30 days before the run), the secondary indexes built afterwards, the file fsynced before the first round.',
      '',
    );
    for (const s of g.sizes) if (s.prefill > 0) lines.push(`File with ${fmt(s.endRows)} requests at the end: ${fmt(statSync(bases.get(s.prefill)!).size / s.endRows)} bytes per request on average (a bulk-built file: index pages packed full).`);
    lines.push('');
  }

  if (PHASES.has('queries')) {
    const n = [...bases.keys()].sort((a, b) => a - b)[0];
    if (n === undefined) log('phase 3 needs a prefilled file (BENCH_WRITER_PREFILL with a size above 0 and the growth phase)');
    else {
      log('phase 3: what each index buys …');
      const q = queryFigures(bases.get(n)!, secondary);
      lines.push(
        `### What each index buys: the queries of gateway/ on the file of ${fmt(q.rows)} decisions`,
        '',
        'Plans (EXPLAIN QUERY PLAN, no ANALYZE, as the gateway runs) and median times; each index is dropped inside a transaction that is rolled back. Retention (audit/retention.ts), `audit verify`, the chain tail and the fleet shipper read by rowid and use no secondary index.',
        '',
        `| query (gateway/…) | ${q.configs.map((c) => c.name).join(' | ')} |`,
        `| --- | ${q.configs.map(() => '---:').join(' | ')} |`,
        ...QUERIES.map((query, k) => `| ${query.name} (${query.source}) | ${q.configs.map((c) => `${fmt(q.figures.get(c.name)![k]!.ms, 2)} ms`).join(' | ')} |`),
        '',
        'Plans with all shipped indexes, and where dropping one changes them:',
        '',
        ...QUERIES.map((query, k) => {
          const shipped = q.figures.get('shipped')![k]!.plan;
          const changed = q.configs.slice(1).map((c) => [c.name, q.figures.get(c.name)![k]!.plan] as const).filter(([, p]) => p !== shipped);
          return `- ${query.name}: \`${shipped}\`${changed.map(([c, p]) => `; ${c}: \`${p}\``).join('')}`;
        }),
        '',
      );
    }
  }
  lines.push(`Whole run: ${fmt((performance.now() - started) / 60_000, 1)} min.`, '');
  const body = lines.join('\n');
  writeSection(body);
  process.stdout.write(body);
}

await main();
process.exit(0);
