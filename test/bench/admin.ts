/**
 * `npm run bench:admin`: the admin dashboard's queries and the online backup
 * on a generated 10-million-row audit database (BENCH_ADMIN_ROWS overrides).
 * Generates the file with INSERT … SELECT over a recursive CTE, one
 * transaction per million rows, then times every dashboard query on the
 * dashboard's own read-only connection, and a backup of the whole file, with
 * the longest event-loop turn during each (what a request could have waited).
 * Prints Markdown and writes it to test/bench/ADMIN-RESULTS.md.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { AdminQueries } from '../../gateway/admin/admin-queries.js';
import { backupAuditDatabase } from '../../gateway/audit/backup.js';
import { CHAIN_COLUMNS } from '../../gateway/store/chain.js';
import { DashboardData } from '../../gateway/admin/dashboard-data.js';
import { openBulkLoad } from './prefill.js';

const ROWS = Number(process.env.BENCH_ADMIN_ROWS ?? 10_000_000);
const CHUNK = 1_000_000;
const DAYS = 30;
const dir = mkdtempSync(path.join(process.env.BENCH_ADMIN_DIR ?? tmpdir(), 'govgate-bench-admin-'));
const file = path.join(dir, 'audit.db');
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------- generate

const started = performance.now();
const { db, finish } = openBulkLoad(file);

const endJd = (db.prepare("SELECT julianday('now') AS jd").get() as { jd: number }).jd;
const step = DAYS / ROWS;
const BENCH_POLICY = 'b'.repeat(64);
// Rows are chained as the gateway chains them, so the backup's chain check (part of what is measured) passes.
const decisionColumns = CHAIN_COLUMNS.usagelog.map(([c]) => c).join(', ');
const insert = db.prepare(`
  WITH RECURSIVE n(i) AS (SELECT @from UNION ALL SELECT i + 1 FROM n WHERE i < @to)
  INSERT INTO usagelog (${decisionColumns}, prev_hash, hash)
  SELECT ${decisionColumns}, chain_prev('usagelog'), chain_hash('usagelog', ${decisionColumns}) FROM (
  SELECT printf('bench-%010d', i) AS id, 'customer-' || (i % 40) AS customer_id, 'key_' || (i % 200) AS api_key_id,
         CASE i % 5 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'gpt-4o-mini' WHEN 2 THEN 'text-embedding-3-small' WHEN 3 THEN 'o3-mini' ELSE 'gpt-4.1' END AS model,
         CASE i % 5 WHEN 2 THEN 'embeddings' ELSE 'chat.completions' END AS operation,
         '{"metadata":{"data_classification":"internal"},"stream":false,"max_tokens":null,"messages":2,"tools":0,"body_bytes":512,"provider":"openai","kind":"proxy"}' AS meta,
         CAST((i * 7) % 101 AS REAL) AS risk_score, i % 10 != 0 AS allowed,
         CASE WHEN i % 10 != 0 THEN 'allowed'
              WHEN i % 30 = 0 THEN 'rule restricted-data: Restricted data may not be sent to any model'
              WHEN i % 20 = 0 THEN 'risk_score 90 >= block_threshold 70: rules pii-to-external (90)'
              ELSE 'customer customer-' || (i % 40) || ' may not use model gpt-4o' END AS reason,
         strftime('%Y-%m-%d %H:%M:%f', @start + i * @step) AS created_at,
         '${BENCH_POLICY}' AS policy_hash,
         CASE WHEN i % 10 != 0 THEN '[]'
              WHEN i % 30 = 0 THEN '[{"kind":"rule","rule":"restricted-data"}]'
              WHEN i % 20 = 0 THEN '[{"kind":"risk_threshold","score":90,"threshold":70}]'
              ELSE '[{"kind":"allow_list","list":"models"}]' END AS causes
    FROM n)`);
const outcomeColumns = CHAIN_COLUMNS.usagelog_outcome.map(([c]) => c).join(', ');
const outcomes = db.prepare(`
  INSERT INTO usagelog_outcome (${outcomeColumns}, prev_hash, hash)
  SELECT ${outcomeColumns}, chain_prev('usagelog_outcome'), chain_hash('usagelog_outcome', ${outcomeColumns}) FROM (
  SELECT id AS log_id, 200 AS status, 420.5 AS duration_ms, 415.0 AS upstream_ms, 100 + CAST(risk_score AS INTEGER) AS prompt_tokens, 50 AS completion_tokens,
         150 + CAST(risk_score AS INTEGER) AS total_tokens, NULL AS error, created_at FROM usagelog WHERE rowid BETWEEN @from AND @to AND allowed = 1 ORDER BY rowid)`);
for (let from = 1; from <= ROWS; from += CHUNK) {
  const to = Math.min(ROWS, from + CHUNK - 1);
  db.transaction(() => {
    insert.run({ from, to, start: endJd - DAYS, step });
    outcomes.run({ from, to });
  })();
  process.stderr.write(`\rbench:admin: generated ${to.toLocaleString('en')} of ${ROWS.toLocaleString('en')} rows (${seconds(performance.now() - started)})`);
}
process.stderr.write('\nbench:admin: building indexes …\n');
finish();
const generatedIn = performance.now() - started;
const bytes = statSync(file).size;

// ---------------------------------------------------------------- measure

const queries = new AdminQueries(file);
const hourMs = 3_600_000;
const now = new Date();
const hourText = (t: number) => new Date(t).toISOString().replace('T', ' ').slice(0, 23);
const lastFullHour = Math.floor(now.getTime() / hourMs) * hourMs - hourMs;

interface Timing {
  what: string;
  runs: number;
  median: number;
  max: number;
}
function timeIt(what: string, runs: number, fn: (i: number) => unknown): Timing {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn(i);
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { what, runs, median: ms[Math.floor(runs / 2)]!, max: ms.at(-1)! };
}
const hours = (i: number): [string, string] => {
  const from = lastFullHour - i * 7 * hourMs;
  return [hourText(from), hourText(from + hourMs)];
};

const timings: Timing[] = [
  timeIt('hourCounts: allowed/blocked + risk histogram, one hour', 40, (i) => queries.hourCounts(...hours(i))),
  timeIt('groups: customer × model, one hour', 40, (i) => queries.groups(...hours(i))),
  timeIt('tokens: outcome join, one hour', 40, (i) => queries.tokens(...hours(i))),
  timeIt('blockedCauses: one hour', 40, (i) => queries.blockedCauses(...hours(i))),
  timeIt('latest 100 decisions', 40, () => queries.latest(100)),
];

const data = new DashboardData(queries);
/** Runs `work` while a 1 ms timer watches the event loop; returns the longest turn it saw. */
async function longestTurnDuring(work: () => Promise<unknown>): Promise<number> {
  let longest = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const t = performance.now();
    longest = Math.max(longest, t - last - 1);
    last = t;
  }, 1);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return longest;
}
let coldMs = 0;
let warmMs = 0;
let cold!: Awaited<ReturnType<typeof data.summary>>;
const summaryTurn = await longestTurnDuring(async () => {
  let t0 = performance.now();
  cold = await data.summary();
  coldMs = performance.now() - t0;
  t0 = performance.now();
  await data.summary();
  warmMs = performance.now() - t0;
});
queries.close();

// What this machine does to an idle event loop (other processes, GC), to read the figures above and below against.
const idleTurn = await longestTurnDuring(() => new Promise((resolve) => setTimeout(resolve, 10_000)));
let backup!: Awaited<ReturnType<typeof backupAuditDatabase>>;
const backupTurn = await longestTurnDuring(async () => {
  backup = await backupAuditDatabase(file, path.join(dir, 'backups'), 1);
});

const plans = new AdminQueries(file);
const plan = plans.plans();
plans.close();

const rowsPerHour = Math.round(ROWS / (DAYS * 24));
const lines = [
  `# Admin dashboard on a ${ROWS.toLocaleString('en')}-row audit database`,
  '',
  `Generated in ${seconds(generatedIn)} (${(bytes / 1e9).toFixed(2)} GB, ${DAYS} days, about ${rowsPerHour.toLocaleString('en')} decisions per hour, 10 % blocked, an outcome row per allowed decision). Node ${process.version}.`,
  '',
  '| query (read-only connection) | runs | median ms | max ms |',
  '| --- | ---: | ---: | ---: |',
  ...timings.map((t) => `| ${t.what} | ${t.runs} | ${t.median.toFixed(1)} | ${t.max.toFixed(1)} |`),
  '',
  `| /admin/api/summary | ms |`,
  '| --- | ---: |',
  `| first load (720 hours of counts, 24 hours of details, each hour its own statements) | ${coldMs.toFixed(0)} |`,
  `| reload (finished hours cached; the current hour re-read) | ${warmMs.toFixed(1)} |`,
  `| longest event-loop turn during both | ${summaryTurn.toFixed(1)} |`,
  '',
  `Backup (online backup API + integrity_check, in a worker thread): ${(backup.bytes / 1e9).toFixed(2)} GB in ${seconds(backup.ms)}; longest event-loop turn meanwhile ${backupTurn.toFixed(1)} ms.`,
  `For comparison, the longest turn of an idle event loop over 10 s on this machine: ${idleTurn.toFixed(1)} ms (load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores).`,
  '',
  `Summary: ${cold.customers.length} customer × model rows, ${cold.blocking.length} blocking causes, ${cold.daily.reduce((n, d) => n + d.allowed + d.blocked, 0).toLocaleString('en')} decisions in 30 days.`,
  '',
  'Query plans:',
  '',
  ...Object.entries(plan).map(([k, v]) => `- ${k}: \`${v}\``),
];
console.log(lines.join('\n'));
writeFileSync(path.join(import.meta.dirname, 'ADMIN-RESULTS.md'), `${lines.join('\n')}\n`);
