import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { AuditWriter, type DecisionRow, type OutcomeRow } from '../../gateway/audit/audit-writer.js';
import { CHAIN_COLUMNS, rowHash, type ChainName } from '../../gateway/store/chain.js';
import { ControlLog, controlEvent } from '../../gateway/audit/control-log.js';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { pruneAuditRows } from '../../gateway/audit/retention.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { migrateCentralSchema } from '../../gateway/fleet/central-schema.js';
import { pruneCentralAudit } from '../../gateway/fleet/central-retention.js';
import { FleetDatabase } from '../../gateway/fleet/fleet-database.js';
import { LocalWatermark, localShippedThrough } from '../../gateway/fleet/local-watermark.js';
import { SHIPPED_TABLES } from '../../gateway/fleet/shipped-tables.js';
import { AuditShipper } from '../../gateway/fleet/shipper.js';
import type { IdentityConflict } from '../../gateway/fleet/fleet-identity.js';
import { postgresInstalled, startPostgres, type PostgresCluster } from '../helpers/postgres.js';

const installed = postgresInstalled();
if (!installed) console.warn('fleet/central-audit: tests that need PostgreSQL skipped: it is not installed (apt-get install -y postgresql)');
const skipNote = installed ? '' : ' (SKIPPED: PostgreSQL is not installed; apt-get install -y postgresql)';
/** Each test ships under gateway ids of its own, so they run side by side on the one PostgreSQL. */
const pgTest = installed ? test : test.skip;

let cluster: PostgresCluster | undefined;
let central: FleetDatabase;
const dirs: string[] = [];

test.before(async () => {
  if (!installed) return;
  cluster = await startPostgres();
  central = new FleetDatabase(cluster.url, { applicationName: 'govgate test' });
  await migrateCentralSchema(central);
});

test.after.always(async () => {
  await central?.close();
  cluster?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function newFile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-central-'));
  dirs.push(dir);
  return path.join(dir, 'audit.db');
}

/** Values whose renderings would differ between languages or lose bits in a careless round trip. */
/** Not -0: SQLite itself stores it as 0. */
const AWKWARD_REALS = [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 123456789.123456789, 42];

function decision(i: number, createdAt: string): DecisionRow {
  return {
    id: `log-${i}-${createdAt}`, customer_id: `cust-${i % 3}`, api_key_id: `key_${i % 2}`, model: i % 4 === 0 ? null : 'gpt-4o-mini',
    operation: 'chat.completions', meta: JSON.stringify({ i, note: 'ünïcödé "quoted" \\ back\nslash', emoji: '🦆' }),
    risk_score: AWKWARD_REALS[i % AWKWARD_REALS.length]!, allowed: i % 5 === 0 ? 0 : 1, reason: i % 5 === 0 ? 'blocked {by} "rule"' : 'allowed',
    created_at: createdAt, policy_hash: 'p'.repeat(64), causes: i % 5 === 0 ? '[{"kind":"rule","rule":"r,1"}]' : '[]',
  };
}

function outcome(i: number, createdAt: string): OutcomeRow {
  return {
    log_id: `log-${i}-${createdAt}`, status: i % 6 === 0 ? null : 200, duration_ms: AWKWARD_REALS[(i + 1) % AWKWARD_REALS.length]!, upstream_ms: i % 2 ? null : 1 / 7,
    prompt_tokens: i % 3 ? 9_007_199_254_740_991 : null, completion_tokens: 3, total_tokens: i, error: i % 6 === 0 ? 'upstream_timeout' : null, created_at: createdAt,
  };
}

/** Writes `n` decisions and outcomes with the gateway's own writer, plus a control event and a policy text, all created `ageDays` ago. */
async function writeRows(file: string, from: number, n: number, ageDays = 0): Promise<void> {
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  try {
    const writer = new AuditWriter(db, new StoreFile(file), { onCommit() {}, onFailure(err) { throw err; } });
    const createdAt = sqliteTime(new Date(Date.now() - ageDays * 86_400_000));
    const turn: Promise<void>[] = [];
    for (let i = from; i < from + n; i++) {
      turn.push(writer.record(decision(i, createdAt)));
      writer.recordOutcome(outcome(i, createdAt));
    }
    await Promise.all(turn);
    writer.flush();
    new ControlLog(db).append([controlEvent('gateway.started', 'gateway', { from, n })], [{ hash: `policy-${from}`, loaded_at: createdAt, path: 'config/policy.yaml', text: `version: 1 # ${from}` }]);
  } finally {
    db.close();
  }
}

interface Shipping {
  readonly shipper: AuditShipper;
  readonly conflicts: IdentityConflict[];
  readonly shipped: number;
  readonly db: Db;
  close(): Promise<void>;
}

function startShipper(file: string, gatewayId: string): Shipping {
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  const conflicts: IdentityConflict[] = [];
  let shipped = 0;
  const shipper = new AuditShipper({
    auditPath: file, database: central, gatewayId, instance: 'test', local: new LocalWatermark(db), batchRows: 100,
    hooks: { onLost(err) { throw err; }, onBack() {}, onConflict(p) { conflicts.push(p); }, onShipped(_t, rows) { shipped += rows; } },
  });
  shipper.start();
  return {
    shipper, conflicts, db,
    get shipped() { return shipped; },
    async close() {
      await shipper.stop(2000);
      db.close();
    },
  };
}

async function until(what: string, done: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const caughtUp = (s: AuditShipper) => SHIPPED_TABLES.every((t) => s.lag(t).rows === 0);

/** Central rows of a chain as the verifier reads them: times rebuilt to SQLite's text, `allowed` as 0/1. */
async function centralChain(gatewayId: string, chain: ChainName): Promise<Record<string, unknown>[]> {
  const columns = CHAIN_COLUMNS[chain].map(([name]) => (name === 'created_at' ? `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') AS created_at` : name === 'allowed' ? 'allowed::int AS allowed' : name));
  const { rows } = await central.query(`SELECT row_id, prev_hash, hash, ${columns.join(', ')} FROM ${chain} WHERE gateway_id = $1 ORDER BY row_id`, [gatewayId]);
  return rows;
}

pgTest(`every shipped row's hash recomputes from the central tables, values exact${skipNote}`, async (t) => {
  const file = newFile();
  await writeRows(file, 0, 250);
  const s = startShipper(file, 'rt-1');
  try {
    await until('caught up', () => caughtUp(s.shipper));
  } finally {
    await s.close();
  }
  t.deepEqual(s.conflicts, []);
  const local = openDatabase(file, { synchronous: 'NORMAL', readonly: true });
  try {
    for (const chain of ['usagelog', 'usagelog_outcome', 'audit_event'] as const) {
      const rows = await centralChain('rt-1', chain);
      t.is(rows.length, local.prepare(`SELECT count(*) FROM ${chain}`).pluck().get() as number, chain);
      for (const row of rows) t.is(rowHash(chain, row.prev_hash as string, row), row.hash as string, `${chain} row ${String(row.row_id)}`);
      const localRows = local.prepare(`SELECT rowid AS row_id, * FROM ${chain} ORDER BY rowid`).all() as Record<string, unknown>[];
      t.deepEqual(rows.map((r) => Number(r.row_id)), localRows.map((r) => r.row_id));
    }
    // The REALs come back with every bit.
    const { rows: reals } = await central.query<{ risk_score: number }>("SELECT risk_score FROM usagelog WHERE gateway_id = 'rt-1' ORDER BY row_id LIMIT 7");
    t.deepEqual(reals.map((r) => r.risk_score), AWKWARD_REALS);
  } finally {
    local.close();
  }
  const { rows: [policies] } = await central.query<{ n: string }>("SELECT count(*) AS n FROM policy_version WHERE hash = 'policy-0'");
  t.is(policies!.n, '1');
  // The seed's queries run as written.
  const { rows: [blocked] } = await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE allowed = false AND created_at > now() - interval '1 hour' AND gateway_id = 'rt-1'");
  t.is(Number(blocked!.n), 50);
  t.is(s.shipped, 250 + 250 + 1 + 1);
});

pgTest(`a batch shipped twice is stored once, and the central audit tables refuse UPDATE, DELETE and TRUNCATE${skipNote}`, async (t) => {
  const file = newFile();
  await writeRows(file, 0, 20);
  const s = startShipper(file, 'ao-1');
  try {
    await until('caught up', () => caughtUp(s.shipper));
  } finally {
    await s.close();
  }
  const { centralInsert, centralParams, shippedTable, localSelect } = await import('../../gateway/fleet/shipped-tables.js');
  const local = openDatabase(file, { synchronous: 'NORMAL', readonly: true });
  const rows = local.prepare(localSelect(shippedTable('usagelog'))).all(0, 1000) as never[];
  local.close();
  const again = await central.query(centralInsert(shippedTable('usagelog')), centralParams(shippedTable('usagelog'), 'ao-1', rows));
  t.is(again.rowCount, 0);
  t.is((await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE gateway_id = 'ao-1'")).rows[0]!.n, '20');

  for (const sql of [
    "UPDATE usagelog SET reason = 'x' WHERE gateway_id = 'ao-1'",
    "DELETE FROM usagelog WHERE gateway_id = 'ao-1'",
    "UPDATE audit_event SET actor = 'x' WHERE gateway_id = 'ao-1'",
    "DELETE FROM audit_event WHERE gateway_id = 'ao-1'",
    "DELETE FROM policy_version WHERE hash = 'policy-0'",
    'TRUNCATE usagelog',
    "UPDATE fleet_gateway SET file_id = 'other' WHERE gateway_id = 'ao-1'",
    "DELETE FROM fleet_gateway WHERE gateway_id = 'ao-1'",
  ]) {
    await t.throwsAsync(central.query(sql), { message: /^govgate: / }, sql);
  }
  // Only under central retention's setting, and never the control log.
  await t.throwsAsync(central.transaction(async (c) => {
    await c.query("SET LOCAL govgate.retention = 'on'");
    await c.query("DELETE FROM audit_event WHERE gateway_id = 'ao-1'");
  }), { message: /append-only/ });
  const deleted = await central.transaction(async (c) => {
    await c.query("SET LOCAL govgate.retention = 'on'");
    return (await c.query("DELETE FROM usagelog WHERE gateway_id = 'ao-1' AND row_id <= 5")).rowCount;
  });
  t.is(deleted, 5);
});

pgTest(`a second file under a gateway id already taken is refused and ships nothing; so is a backup restored over shipped rows${skipNote}`, async (t) => {
  const first = newFile();
  await writeRows(first, 0, 30);
  const backup = newFile();
  copyFileSync(first, backup);
  const owner = startShipper(first, 'id-1');
  await until('caught up', () => caughtUp(owner.shipper));
  await owner.close();
  await writeRows(first, 30, 10);
  const again = startShipper(first, 'id-1');
  await until('caught up again', () => caughtUp(again.shipper));
  await again.close();
  t.deepEqual([...owner.conflicts, ...again.conflicts], []);

  const other = newFile();
  await writeRows(other, 1000, 5);
  const intruder = startShipper(other, 'id-1');
  try {
    await until('the conflict', () => intruder.conflicts.length > 0);
    t.true(intruder.shipper.identityConflict);
    t.regex(intruder.conflicts[0]!.message, /gateway id "id-1" belongs to another audit file/);
  } finally {
    await intruder.close();
  }
  const { rows: [foreign] } = await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE id LIKE 'log-1000-%' OR id LIKE 'log-1001-%'");
  t.is(foreign!.n, '0');

  // The backup has the owner's file id but not the rows shipped since; what it writes now would reuse their row ids.
  await writeRows(backup, 500, 15);
  const restored = startShipper(backup, 'id-1');
  try {
    await until('the conflict', () => restored.conflicts.length > 0);
    t.regex(restored.conflicts[0]!.message, /(older than what it shipped|is not the row shipped|does not continue)/);
  } finally {
    await restored.close();
  }
  t.is((await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE gateway_id = 'id-1'")).rows[0]!.n, '40');
  t.is((await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE id LIKE 'log-5__-%'")).rows[0]!.n, '0');
});

pgTest(`local retention keeps rows not shipped yet; central retention follows the shipped anchors${skipNote}`, async (t) => {
  const file = newFile();
  await writeRows(file, 0, 40, 100);
  const s = startShipper(file, 'ret-1');
  await until('caught up', () => caughtUp(s.shipper));
  await s.close();
  // Older rows written after the shipper stopped: expired, but not shipped.
  await writeRows(file, 40, 10, 100);
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  try {
    const shippedThrough = localShippedThrough(db);
    t.is(shippedThrough('usagelog'), 40);
    const pruned = await pruneAuditRows(db, 30, { shippedThrough });
    t.deepEqual(pruned, { decisions: 40, outcomes: 40 });
    t.is(db.prepare('SELECT count(*) FROM usagelog').pluck().get(), 10, 'the unshipped rows stay');
  } finally {
    db.close();
  }
  const again = startShipper(file, 'ret-1');
  await until('caught up', () => caughtUp(again.shipper));
  await again.close();
  t.deepEqual(again.conflicts, []);
  t.is((await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE gateway_id = 'ret-1'")).rows[0]!.n, '50');

  const result = await pruneCentralAudit(central);
  t.true(result.ran);
  t.is((await central.query<{ n: string }>("SELECT count(*) AS n FROM usagelog WHERE gateway_id = 'ret-1'")).rows[0]!.n, '10');
  // What remains starts at the anchor and links to it.
  const rows = await centralChain('ret-1', 'usagelog');
  const { rows: [anchor] } = await central.query<{ through_rowid: string; through_hash: string }>("SELECT through_rowid, through_hash FROM audit_anchor WHERE gateway_id = 'ret-1' AND chain = 'usagelog' ORDER BY id DESC LIMIT 1");
  t.is(Number(rows[0]!.row_id), Number(anchor!.through_rowid) + 1);
  t.is(rows[0]!.prev_hash, anchor!.through_hash);
  t.true(rows.every((r) => rowHash('usagelog', r.prev_hash as string, r) === r.hash));
  t.true(Number((await central.query<{ n: string }>("SELECT count(*) AS n FROM audit_event WHERE gateway_id = 'ret-1'")).rows[0]!.n) > 0, 'the control log is kept');
});
