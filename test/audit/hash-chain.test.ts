import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import test from 'ava';
import { AuditWriter, type DecisionRow, type OutcomeRow } from '../../gateway/audit/audit-writer.js';
import { GENESIS_HASH, rowHash } from '../../gateway/store/chain.js';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { pruneAuditRows } from '../../gateway/audit/retention.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { auditVerifyCommand } from '../../gateway/cli/audit-command.js';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { runCli } from '../helpers/cli.js';
import { makeGatewayDir, FIXTURE_POLICY, startHarness, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';
import { waitFor } from '../proxy/support.js';

const NO_UPSTREAM = 'http://127.0.0.1:9/v1';
const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Trail {
  readonly dir: string;
  readonly dbPath: string;
  readonly db: Db;
  readonly writer: AuditWriter;
}

/** A checkout-like directory whose audit file is written by the gateway's own writer, without a server. */
function trail(retentionDays = 90): Trail {
  const dir = makeGatewayDir();
  writeGatewayYaml(dir, NO_UPSTREAM, { audit: { retention_days: retentionDays } });
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  const dbPath = path.join(dir, 'data/audit.db');
  const db = openDatabase(dbPath, { synchronous: 'NORMAL', retentionDays });
  const writer = new AuditWriter(db, new StoreFile(dbPath), { onCommit() {}, onFailure() {} });
  cleanups.push(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, dbPath, db, writer };
}

let seq = 0;
function decision(ageDays = 0, overrides: Partial<DecisionRow> = {}): DecisionRow {
  seq++;
  return {
    id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
    customer_id: 'acme',
    api_key_id: 'key_chain',
    model: 'gpt-4o-mini',
    operation: 'chat.completions',
    meta: JSON.stringify({ metadata: { team: 'ünïcode ✓' }, stream: false, max_tokens: 64, messages: 1, tools: null, body_bytes: 120 }),
    risk_score: seq % 3 === 0 ? 12.5 : 90,
    allowed: seq % 2 === 0 ? 1 : 0,
    reason: seq % 2 === 0 ? 'allowed' : 'rule pii-to-external: risk',
    created_at: sqliteTime(new Date(Date.now() - ageDays * 86_400_000)),
    policy_hash: 'a'.repeat(64),
    causes: seq % 2 === 0 ? '[]' : '[{"kind":"rule","rule":"pii-to-external"}]',
    ...overrides,
  };
}

function outcome(logId: string, ageDays = 0): OutcomeRow {
  return {
    log_id: logId, status: 200, duration_ms: 12.25, upstream_ms: 10.125, prompt_tokens: 11, completion_tokens: 7, total_tokens: 18, error: null,
    created_at: sqliteTime(new Date(Date.now() - ageDays * 86_400_000)),
  };
}

/** Writes rows in several group commits, the way a busy gateway does. */
async function fill(t: Trail, count: number, ageDays = 0): Promise<DecisionRow[]> {
  const rows: DecisionRow[] = [];
  for (let i = 0; i < count; i += 7) {
    const turn = Array.from({ length: Math.min(7, count - i) }, () => decision(ageDays));
    rows.push(...turn);
    await Promise.all(turn.map((r) => t.writer.record(r)));
    for (const r of turn) t.writer.recordOutcome(outcome(r.id, ageDays));
  }
  t.writer.flush();
  return rows;
}

/**
 * `govgate audit verify ARGS` run in this process: the command's own code on the
 * trail's config, without paying a process start per call (the CLI process
 * itself is exercised by the first and last tests).
 */
function verify(tr: Trail, ...args: string[]): { status: number; stdout: string } {
  let stdout = '';
  const out = new Writable({ write(chunk: Buffer, _enc, done) { stdout += chunk.toString(); done(); } });
  const status = auditVerifyCommand(loadGatewayConfig('config/gateway.yaml', {}, tr.dir), args, out);
  return { status, stdout };
}

/** Tampering needs the triggers gone first: anyone who can write the file can drop them. */
function tamper(t: Trail, sql: string): void {
  const r = sqliteRaw(t.dbPath, `DROP TRIGGER IF EXISTS usagelog_no_update; DROP TRIGGER IF EXISTS usagelog_no_early_delete; ${sql}`);
  if (r.status !== 0) throw new Error(r.stderr);
}

test('rows written by the gateway form a chain that audit verify accepts, starting at the genesis hash', async (t) => {
  const upstream: MockUpstream = await startMockUpstream();
  const h = await startHarness(upstream.url);
  cleanups.push(async () => {
    await h.close();
    await upstream.close();
  });
  const { key } = h.createKey('acme');
  const client = h.sdk(key);
  await Promise.all(Array.from({ length: 12 }, () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })));
  await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'X-Governance-Metadata': '{"contains_pii":true}' } })
    .catch(() => undefined);
  // Outcome rows are written in batches after the answers; the count below is of all twelve.
  const outcomes = () => sqliteJson<{ n: number }>(h.dbPath, 'SELECT count(*) AS n FROM usagelog_outcome')[0]!.n;
  t.is(await waitFor(() => (outcomes() >= 12 ? outcomes() : undefined), 3000), 12);

  const rows = sqliteJson<{ prev_hash: string; hash: string }>(h.dbPath, 'SELECT prev_hash, hash FROM usagelog ORDER BY rowid');
  t.is(rows.length, 13);
  t.is(rows[0]!.prev_hash, GENESIS_HASH);
  for (let i = 1; i < rows.length; i++) t.is(rows[i]!.prev_hash, rows[i - 1]!.hash, `row ${i + 1} links to row ${i}`);
  t.true(rows.every((r) => /^[0-9a-f]{64}$/.test(r.hash)));

  const r = runCli(['audit', 'verify'], { cwd: h.dir });
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /audit trail intact: 13 decision rows, 12 outcome rows and \d+ control events verified/);
});

test('an auditor can recompute every hash from the canonical encoding in docs/audit.md, in Python', async (t) => {
  const tr = trail();
  await fill(tr, 20);
  // An independent implementation of the "Audit integrity" section of docs/audit.md, not the gateway's code.
  const script = `
import hashlib, sqlite3, struct, sys
V1 = ['id','customer_id','api_key_id','model','operation','meta','risk_score','allowed','reason','created_at']
COLS = {
  'usagelog': V1 + ['policy_hash','causes'],
  'usagelog_outcome': ['log_id','status','duration_ms','upstream_ms','prompt_tokens','completion_tokens','total_tokens','error','created_at'],
  'audit_event': ['id','kind','actor','detail','created_at'],
}
def field(v):
    if v is None: return b'-\\n'
    if isinstance(v, float): v = struct.pack('>d', v).hex()
    b = str(v).encode('utf-8')
    return str(len(b)).encode() + b':' + b + b'\\n'
db = sqlite3.connect(sys.argv[1])
checked = 0
for table, cols in COLS.items():
    prev = '0' * 64
    for row in db.execute('SELECT prev_hash, hash, ' + ','.join(cols) + ' FROM ' + table + ' ORDER BY rowid'):
        values = list(row[2:])
        v2 = table == 'audit_event' or (table == 'usagelog' and values[len(V1)] is not None)
        if table == 'usagelog' and not v2: values = values[:len(V1)]
        rec = (b'govgate-audit-v2\\n' if v2 else b'govgate-audit-v1\\n') + field(table) + field(row[0]) + b''.join(field(v) for v in values)
        assert row[0] == prev, (table, checked)
        assert hashlib.sha256(rec).hexdigest() == row[1], (table, checked)
        prev = row[1]
        checked += 1
print(checked)
`;
  const r = spawnSync('python3', ['-c', script, tr.dbPath], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), '40');
});

test('triggers refuse UPDATE, and DELETE inside the retention window, with a clear message', async (t) => {
  const tr = trail(30);
  await fill(tr, 3, 40);
  await fill(tr, 3);

  const update = sqliteRaw(tr.dbPath, "UPDATE usagelog SET allowed = 1 WHERE allowed = 0;");
  t.not(update.status, 0);
  t.regex(update.stderr, /usagelog is append-only; audit rows cannot be updated/);
  const updateOutcome = sqliteRaw(tr.dbPath, 'UPDATE usagelog_outcome SET total_tokens = 0;');
  t.regex(updateOutcome.stderr, /usagelog_outcome is append-only/);

  const young = sqliteRaw(tr.dbPath, "DELETE FROM usagelog WHERE created_at > datetime('now', '-1 day');");
  t.not(young.status, 0);
  t.regex(young.stderr, /usagelog rows inside the 30-day retention window cannot be deleted/);
  t.deepEqual(sqliteJson(tr.dbPath, 'SELECT count(*) AS n FROM usagelog'), [{ n: 6 }], 'nothing was deleted');

  // Rows past the window may go (that is retention's job), and anchors never.
  const old = sqliteRaw(tr.dbPath, "DELETE FROM usagelog WHERE created_at < datetime('now', '-35 days');");
  t.is(old.status, 0, old.stderr);
  t.deepEqual(sqliteJson(tr.dbPath, 'SELECT count(*) AS n FROM usagelog'), [{ n: 3 }]);
  const anchor = sqliteRaw(tr.dbPath, "INSERT INTO audit_anchor (chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at) VALUES ('usagelog', 1, 'x', 'x', 1, 'x'); DELETE FROM audit_anchor;");
  t.regex(anchor.stderr, /audit_anchor is append-only/);
});

test('a row edited with the triggers dropped is named by audit verify', async (t) => {
  const tr = trail();
  await fill(tr, 30);
  t.is(verify(tr).status, 0);
  tamper(tr, 'UPDATE usagelog SET allowed = 1 - allowed WHERE rowid = 11;');
  const r = verify(tr);
  t.is(r.status, 1);
  t.regex(r.stdout, /audit trail BROKEN: usagelog row 11 \(00000000-[0-9a-f-]+\) was changed/);
});

test('an edited row whose hash was recomputed breaks the link of the row after it', async (t) => {
  const tr = trail();
  await fill(tr, 30);
  const row = tr.db.prepare('SELECT * FROM usagelog WHERE rowid = 8').get() as DecisionRow & { prev_hash: string };
  const forged = { ...row, reason: 'forged', allowed: row.allowed === 1 ? (0 as const) : (1 as const) };
  tamper(tr, `UPDATE usagelog SET reason = 'forged', allowed = ${forged.allowed}, hash = '${rowHash('usagelog', row.prev_hash, forged)}' WHERE rowid = 8;`);
  const r = verify(tr);
  t.is(r.status, 1);
  t.regex(r.stdout, /usagelog row 9 .*does not link to row 8/);
});

test('a removed row, rows removed from the start, and a row inserted out of order are each caught', async (t) => {
  const removed = trail();
  await fill(removed, 20);
  tamper(removed, 'DELETE FROM usagelog WHERE rowid = 5;');
  t.regex(verify(removed).stdout, /usagelog row 6 .*does not link to row 4: rows between them were removed/);

  const head = trail();
  await fill(head, 20);
  tamper(head, 'DELETE FROM usagelog WHERE rowid <= 3;');
  t.regex(verify(head).stdout, /usagelog row 4 .*rows before it were removed without a retention anchor/);

  const inserted = trail();
  await fill(inserted, 20);
  // A well-formed, correctly hashed row slipped in before the first one (the forger picks a free rowid).
  const fake = decision();
  const hash = rowHash('usagelog', GENESIS_HASH, fake);
  tamper(inserted, `INSERT INTO usagelog (rowid, id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at, policy_hash, causes, prev_hash, hash)
    VALUES (0, '${fake.id}', '${fake.customer_id}', '${fake.api_key_id}', '${fake.model}', '${fake.operation}', '${fake.meta}', ${fake.risk_score}, ${fake.allowed}, '${fake.reason}', '${fake.created_at}', '${fake.policy_hash}', '${fake.causes}', '${GENESIS_HASH}', '${hash}');`);
  const r = verify(inserted);
  t.is(r.status, 1);
  t.regex(r.stdout, new RegExp(`usagelog row 0 \\(${fake.id}\\) was inserted out of order`));
});

test('the outcome chain is verified too', async (t) => {
  const tr = trail();
  await fill(tr, 14);
  tamper(tr, 'DROP TRIGGER usagelog_outcome_no_update; UPDATE usagelog_outcome SET total_tokens = 1 WHERE rowid = 3;');
  const r = verify(tr);
  t.is(r.status, 1);
  t.regex(r.stdout, /usagelog_outcome row 3 .*was changed/);
});

test('retention deletes only the expired prefix, anchors it, and the rest still verifies', async (t) => {
  const tr = trail(30);
  await fill(tr, 1200, 45);
  const kept = await fill(tr, 25, 1);
  const headBefore = verify(tr, '--export-head');
  t.is(headBefore.status, 0, headBefore.stdout);

  const result = await pruneAuditRows(tr.db, 30);
  t.deepEqual(result, { decisions: 1200, outcomes: 1200 });
  t.deepEqual(sqliteJson<{ id: string }>(tr.dbPath, 'SELECT id FROM usagelog ORDER BY rowid').map((r) => r.id), kept.map((r) => r.id));
  const anchors = sqliteJson<{ chain: string; rows_deleted: number }>(tr.dbPath, 'SELECT chain, rows_deleted FROM audit_anchor ORDER BY id');
  t.is(anchors.filter((a) => a.chain === 'usagelog').reduce((n, a) => n + a.rows_deleted, 0), 1200, 'every deleted row is covered by an anchor');

  const r = verify(tr);
  t.is(r.status, 0, r.stdout);
  t.regex(r.stdout, /25 decision rows, 25 outcome rows and \d+ control events verified/);
  t.is(verify(tr, '--against', headBefore.stdout.trim()).status, 0, 'a head exported before retention still checks out');

  // Retention never deletes past the first row inside the window, even if older rows follow it.
  await fill(tr, 3, 60);
  t.deepEqual(await pruneAuditRows(tr.db, 30), { decisions: 0, outcomes: 0 });
  t.is(verify(tr).status, 0);
});

test('--export-head and --against catch what plain verification cannot: a cut-off tail and a rewritten chain', async (t) => {
  const tr = trail();
  await fill(tr, 10);
  const exported = verify(tr, '--export-head');
  t.is(exported.status, 0);
  const head = JSON.parse(exported.stdout) as Record<string, { rowid: number; id: string; hash: string; created_at: string }>;
  t.is(head.usagelog!.rowid, 10);
  t.regex(head.usagelog!.hash, /^[0-9a-f]{64}$/);
  t.truthy(head.usagelog_outcome);
  const headFile = path.join(tr.dir, 'head.json');
  writeFileSync(headFile, exported.stdout);

  await fill(tr, 5);
  const later = verify(tr, '--against', headFile);
  t.is(later.status, 0, later.stdout);
  t.regex(later.stdout, /exported head found unchanged/);

  // The newest rows cut off: the chain that remains is internally consistent.
  tamper(tr, 'DELETE FROM usagelog WHERE rowid >= 9;');
  t.is(verify(tr).status, 0, 'plain verification cannot see a cut-off tail');
  const cut = verify(tr, '--against', headFile);
  t.is(cut.status, 1);
  t.regex(cut.stdout, /usagelog row 10 .*is missing/);
});

test('a chain rewritten from an edited row onwards verifies on its own but not against an exported head', async (t) => {
  const tr = trail();
  await fill(tr, 8);
  const headFile = path.join(tr.dir, 'head.json');
  writeFileSync(headFile, verify(tr, '--export-head').stdout);

  const rows = tr.db.prepare('SELECT * FROM usagelog ORDER BY rowid').all() as (DecisionRow & { prev_hash: string; hash: string })[];
  let prev = rows[2]!.hash;
  const updates: string[] = [];
  for (const row of rows.slice(3)) {
    const edited = row === rows[3] ? { ...row, allowed: row.allowed === 1 ? (0 as const) : (1 as const), reason: 'forged' } : row;
    const hash = rowHash('usagelog', prev, edited);
    updates.push(`UPDATE usagelog SET allowed = ${edited.allowed}, reason = '${edited.reason}', prev_hash = '${prev}', hash = '${hash}' WHERE rowid = ${(tr.db.prepare('SELECT rowid FROM usagelog WHERE id = ?').pluck().get(row.id) as number)};`);
    prev = hash;
  }
  tamper(tr, updates.join('\n'));
  t.is(verify(tr).status, 0, 'a full rewrite is consistent with itself');
  const r = verify(tr, '--against', headFile);
  t.is(r.status, 1);
  t.regex(r.stdout, /usagelog row 8 .*differs from the exported head/);
});

test('audit verify reports a missing database and a malformed head as one line with exit 2 or 1', (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeGatewayYaml(dir, NO_UPSTREAM);
  const missing = runCli(['audit', 'verify'], { cwd: dir });
  t.is(missing.status, 1);
  t.regex(missing.stderr, /^govgate: no audit database at .*audit\.db\n$/);
  const bad = runCli(['audit', 'verify', '--against', '{"usagelog":{"rowid":"x"}}'], { cwd: dir });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /exported head's "usagelog" must have rowid/);
});

test('an anchor forged to hide a deletion inside the retention window is caught', async (t) => {
  const tr = trail(90);
  await fill(tr, 10);
  const fifth = tr.db.prepare('SELECT hash, created_at FROM usagelog WHERE rowid = 5').get() as { hash: string; created_at: string };
  tamper(tr, `DELETE FROM usagelog WHERE rowid <= 5;
    INSERT INTO audit_anchor (chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at)
      VALUES ('usagelog', 5, '${fifth.hash}', '${fifth.created_at}', 5, '${fifth.created_at}');`);
  const r = verify(tr);
  t.is(r.status, 1);
  t.regex(r.stdout, /usagelog row 5 is covered by retention anchor \d+, which deleted rows up to .* inside the retention window/);
});

test('after retention empties a table, rowids keep rising and an exported head is still found or accounted for', async (t) => {
  const tr = trail(30);
  await fill(tr, 5, 45);
  const oldHead = verify(tr, '--export-head').stdout.trim();
  t.deepEqual(await pruneAuditRows(tr.db, 30), { decisions: 5, outcomes: 5 });
  t.deepEqual(sqliteJson(tr.dbPath, 'SELECT count(*) AS n FROM usagelog'), [{ n: 0 }]);

  await fill(tr, 3);
  t.deepEqual(sqliteJson<{ r: number }>(tr.dbPath, 'SELECT rowid AS r FROM usagelog ORDER BY rowid').map((x) => x.r), [6, 7, 8]);
  const r = verify(tr, '--against', oldHead);
  t.is(r.status, 0, r.stdout);
  t.regex(r.stdout, /head row 5 has since been deleted by retention/);
  t.regex(r.stdout, /3 decision rows, 3 outcome rows and \d+ control events verified/);

  // A fresh row deleted by hand is not mistaken for one retention took.
  const newHead = verify(tr, '--export-head').stdout.trim();
  tamper(tr, 'DELETE FROM usagelog WHERE rowid = 8;');
  t.regex(verify(tr, '--against', newHead).stdout, /usagelog row 8 .*is missing/);
});

test('a row moved out of order is named as such', async (t) => {
  const tr = trail();
  await fill(tr, 10);
  // Row 3 moved to the end: its content and hash are intact, so the break shows where its successor points.
  tamper(tr, 'UPDATE usagelog SET rowid = 100 WHERE rowid = 3;');
  const r = verify(tr);
  t.is(r.status, 1);
  t.regex(r.stdout, /usagelog row 4 \(.*\) is out of order: it links to row 100/);
});
