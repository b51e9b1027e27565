/**
 * An audit file with rows already in it, for the benchmarks that measure what a
 * populated table costs (`npm run bench` and `npm run bench:writer`, issue 18 point 8), and the bulk
 * load `npm run bench:admin` generates its file with.
 */
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { CHAIN_COLUMNS, GENESIS_HASH, rowHash } from '../../gateway/store/chain.js';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { syntheticDecision, syntheticOutcome } from '../helpers/audit-rows.js';

/** Prefilled rows are spread over this many days, ending an hour ago. */
export const PREFILL_DAYS = 30;
const PREFILL_CHUNK = 1_000_000;

/**
 * The audit file at `file` opened for a bulk load: no fsyncs, a big cache, the
 * secondary indexes dropped (building them once afterwards is far faster than
 * maintaining them row by row), and SQL functions that chain rows as the
 * gateway does, so `audit verify` and backups pass on the result: an INSERT
 * selects `chain_prev('<table>')` and then `chain_hash('<table>', <the table's
 * CHAIN_COLUMNS in order>)`. `finish` rebuilds the indexes, empties the WAL
 * and closes the file.
 */
export function openBulkLoad(file: string): { db: Db; finish: () => void } {
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -1000000');
  const indexes = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('usagelog', 'usagelog_outcome') AND sql IS NOT NULL").all() as { name: string; sql: string }[];
  for (const { name } of indexes) db.exec(`DROP INDEX ${name}`);
  const links: Record<string, string> = { usagelog: GENESIS_HASH, usagelog_outcome: GENESIS_HASH };
  // SQLite evaluates a row's result columns left to right: chain_prev reads the link, chain_hash then moves it on.
  db.function('chain_prev', (chain) => links[chain as string]!);
  db.function('chain_hash', { varargs: true }, (chain, ...values) => {
    const name = chain as 'usagelog' | 'usagelog_outcome';
    const row = Object.fromEntries(CHAIN_COLUMNS[name].map(([column], i) => [column, values[i]]));
    links[name] = rowHash(name, links[name]!, row);
    return links[name];
  });
  return {
    db,
    finish: () => {
      for (const { sql } of indexes) db.exec(sql);
      db.pragma('wal_checkpoint(TRUNCATE)');
      db.close();
    },
  };
}

/**
 * `rows` decisions and as many outcomes, like syntheticDecision / syntheticOutcome but with
 * v7-shaped ids whose time is created_at's, chained as the gateway chains them, written with
 * INSERT … SELECT (as test/bench/admin.ts does) and the secondary indexes built afterwards.
 */
export function prefillAuditFile(file: string, rows: number, onProgress: (rowsDone: number) => void = () => {}): { seconds: number } {
  const started = performance.now();
  const { db, finish } = openBulkLoad(file);
  const d = syntheticDecision(0, '');
  const blocked = syntheticDecision(7, '');
  const o = syntheticOutcome(0, '');
  const q = (s: string) => `'${s.replaceAll("'", "''")}'`;
  const decisionColumns = CHAIN_COLUMNS.usagelog.map(([c]) => c).join(', ');
  const insert = db.prepare(`
    WITH RECURSIVE n(i) AS (SELECT CAST(@from AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i < @to)
    INSERT INTO usagelog (${decisionColumns}, prev_hash, hash)
    SELECT ${decisionColumns}, chain_prev('usagelog'), chain_hash('usagelog', ${decisionColumns}) FROM (
    SELECT printf('%08x-%04x-7%03x-%04x-%012x', ms / 65536, ms % 65536, i % 4096, 32768 + (i / 4096) % 16384, i) AS id,
           'customer-' || (i % 50) AS customer_id, 'key_' || (i % 200) AS api_key_id, ${q(d.model!)} AS model, ${q(d.operation)} AS operation, ${q(d.meta)} AS meta,
           CASE WHEN i % 7 = 0 THEN ${blocked.risk_score}.0 ELSE ${d.risk_score}.0 END AS risk_score, i % 7 != 0 AS allowed,
           CASE WHEN i % 7 = 0 THEN ${q(blocked.reason)} ELSE ${q(d.reason)} END AS reason,
           strftime('%Y-%m-%d %H:%M:%f', ms / 86400000.0 + 2440587.5) AS created_at, ${q(d.policy_hash)} AS policy_hash,
           CASE WHEN i % 7 = 0 THEN ${q(blocked.causes)} ELSE ${q(d.causes)} END AS causes
      FROM (SELECT i, CAST(@startMs AS INTEGER) + CAST(i * @stepMs AS INTEGER) AS ms FROM n))`);
  const outcomeColumns = CHAIN_COLUMNS.usagelog_outcome.map(([c]) => c).join(', ');
  const outcomes = db.prepare(`
    INSERT INTO usagelog_outcome (${outcomeColumns}, prev_hash, hash)
    SELECT ${outcomeColumns}, chain_prev('usagelog_outcome'), chain_hash('usagelog_outcome', ${outcomeColumns}) FROM (
    SELECT id AS log_id, ${o.status} AS status, ${o.duration_ms} AS duration_ms, ${o.upstream_ms!.toFixed(1)} AS upstream_ms, ${o.prompt_tokens} AS prompt_tokens,
           ${o.completion_tokens} AS completion_tokens, ${o.total_tokens} AS total_tokens, NULL AS error, created_at
      FROM usagelog WHERE rowid BETWEEN @from AND @to ORDER BY rowid)`);
  const endMs = Date.now() - 3_600_000;
  const startMs = endMs - PREFILL_DAYS * 86_400_000;
  const stepMs = (PREFILL_DAYS * 86_400_000) / rows;
  for (let from = 1; from <= rows; from += PREFILL_CHUNK) {
    const to = Math.min(rows, from + PREFILL_CHUNK - 1);
    db.transaction(() => {
      insert.run({ from, to, startMs, stepMs });
      outcomes.run({ from, to });
    })();
    onProgress(to);
  }
  finish();
  // On disk before anything is measured, so no round's checkpoint fsync pays for the prefill's pages.
  const fd = openSync(file, 'r+');
  fsyncSync(fd);
  closeSync(fd);
  return { seconds: (performance.now() - started) / 1000 };
}
