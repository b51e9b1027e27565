import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import cron from 'node-cron';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { pruneAuditRows } from '../../gateway/audit/retention.js';
import { runCli } from '../helpers/cli.js';
import { makeGatewayDir, FIXTURE_POLICY, startHarness, writeGatewayYaml, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';

// Far from UTC, so a schedule evaluated in local time instead of UTC fires at a visibly different hour.
process.env.TZ = 'Pacific/Kiritimati';

/** Nothing listens here; retention never talks to a provider. */
const NO_UPSTREAM = 'http://127.0.0.1:9/v1';

/** SQLite's own UTC timestamp format, shifted by a modifier such as '-100 days'. */
const aged = (modifier: string) => `strftime('%Y-%m-%d %H:%M:%f', 'now', ${modifier.split(',').map((m) => `'${m.trim()}'`).join(', ')})`;

/**
 * Inserts `count` decision rows, each with an outcome row, all created at the given age.
 * Ids are prefixed with `tag` so each group can be counted separately.
 */
function insertAgedRows(dbPath: string, tag: string, count: number, modifier: string): void {
  const r = sqliteRaw(
    dbPath,
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${count})
     INSERT INTO usagelog (id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at)
       SELECT '${tag}-' || i, 'acme', 'key_test', 'gpt-4o-mini', 'chat.completions', '{}', 0, 1, 'allowed', ${aged(modifier)} FROM n;
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${count})
     INSERT INTO usagelog_outcome (log_id, status, duration_ms, upstream_ms, prompt_tokens, completion_tokens, total_tokens, error, created_at)
       SELECT '${tag}-' || i, 200, 1.5, 1.0, 11, 7, 18, NULL, ${aged(modifier)} FROM n;`,
  );
  if (r.status !== 0) throw new Error(r.stderr);
}

function countTagged(dbPath: string, tag: string): { decisions: number; outcomes: number } {
  const [row] = sqliteJson<{ decisions: number; outcomes: number }>(
    dbPath,
    `SELECT (SELECT count(*) FROM usagelog WHERE id LIKE '${tag}-%') AS decisions,
            (SELECT count(*) FROM usagelog_outcome WHERE log_id LIKE '${tag}-%') AS outcomes`,
  );
  return row!;
}

const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

function freshDb(): { db: Db; dbPath: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-retention-'));
  const dbPath = path.join(dir, 'audit.db');
  const db = openDatabase(dbPath, { synchronous: 'NORMAL' });
  cleanups.push(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { db, dbPath };
}

test('pruneAuditRows deletes exactly the rows older than the window, from both tables', async (t) => {
  const { db, dbPath } = freshDb();
  insertAgedRows(dbPath, 'old', 40, '-100 days');
  insertAgedRows(dbPath, 'outside', 3, '-90 days, -5 minutes');
  insertAgedRows(dbPath, 'inside', 3, '-90 days, +5 minutes');
  insertAgedRows(dbPath, 'recent', 5, '-10 days');
  insertAgedRows(dbPath, 'fresh', 5, '+0 seconds');

  const result = await pruneAuditRows(db, 90);
  t.deepEqual(result, { decisions: 43, outcomes: 43 });
  t.deepEqual(countTagged(dbPath, 'old'), { decisions: 0, outcomes: 0 });
  t.deepEqual(countTagged(dbPath, 'outside'), { decisions: 0, outcomes: 0 }, 'just past the boundary is deleted');
  t.deepEqual(countTagged(dbPath, 'inside'), { decisions: 3, outcomes: 3 }, 'just inside the boundary is kept');
  t.deepEqual(countTagged(dbPath, 'recent'), { decisions: 5, outcomes: 5 });
  t.deepEqual(countTagged(dbPath, 'fresh'), { decisions: 5, outcomes: 5 });

  t.deepEqual(await pruneAuditRows(db, 90), { decisions: 0, outcomes: 0 }, 'a second run finds nothing');
});

test('pruneAuditRows deletes far more rows than one batch and counts them exactly', async (t) => {
  const { db, dbPath } = freshDb();
  insertAgedRows(dbPath, 'old', 5000, '-200 days');
  // Outcomes may be written after their decision, so an outcome can be older than the window on its own.
  const r = sqliteRaw(
    dbPath,
    `INSERT INTO usagelog_outcome (log_id, status, duration_ms, created_at) VALUES ('orphan-1', 200, 1, ${aged('-95 days')});`,
  );
  t.is(r.status, 0, r.stderr);
  insertAgedRows(dbPath, 'fresh', 7, '-1 days');

  const result = await pruneAuditRows(db, 90);
  t.deepEqual(result, { decisions: 5000, outcomes: 5001 });
  t.deepEqual(countTagged(dbPath, 'old'), { decisions: 0, outcomes: 0 });
  t.deepEqual(countTagged(dbPath, 'fresh'), { decisions: 7, outcomes: 7 });
  t.deepEqual(sqliteJson(dbPath, 'SELECT count(*) AS n FROM usagelog_outcome'), [{ n: 7 }]);
});

test('cleanup-logs deletes on demand and prints how many', (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeGatewayYaml(dir, NO_UPSTREAM, { audit: { retention_days: 30 } });
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  const dbPath = path.join(dir, 'data/audit.db');
  openDatabase(dbPath, { synchronous: 'NORMAL' }).close();

  insertAgedRows(dbPath, 'old', 37, '-120 days');
  insertAgedRows(dbPath, 'middle', 23, '-40 days');
  insertAgedRows(dbPath, 'fresh', 4, '-1 hours');

  // With DAYS: that window instead.
  const byArgument = runCli(['cleanup-logs', '100'], { cwd: dir });
  t.is(byArgument.status, 0, byArgument.stderr);
  t.regex(byArgument.stdout, /\bDeleted 37 audit rows\b/, 'prints the number of deleted rows');
  t.deepEqual(countTagged(dbPath, 'old'), { decisions: 0, outcomes: 0 });
  t.deepEqual(countTagged(dbPath, 'middle'), { decisions: 23, outcomes: 23 });

  // A window shorter than audit.retention_days would delete protected rows: refused, nothing deleted.
  const tooShort = runCli(['cleanup-logs', '10'], { cwd: dir });
  t.is(tooShort.status, 2);
  t.regex(tooShort.stderr, /30-day retention window.*at least 30/);
  t.deepEqual(countTagged(dbPath, 'middle'), { decisions: 23, outcomes: 23 });

  // Without DAYS: the configured retention_days (30).
  const byConfig = runCli(['cleanup-logs'], { cwd: dir });
  t.is(byConfig.status, 0, byConfig.stderr);
  // Not a bare number: the cutoff time printed beside it may hold one.
  t.regex(byConfig.stdout, /\bDeleted 23 audit rows\b/);
  t.deepEqual(countTagged(dbPath, 'middle'), { decisions: 0, outcomes: 0 });
  t.deepEqual(countTagged(dbPath, 'fresh'), { decisions: 4, outcomes: 4 });
});

// Serial: it counts on a per-second schedule, which the other tests' synchronous CLI runs would hold up.
test.serial('the gateway runs retention on its cron schedule, in process', async (t) => {
  // node-cron takes a seconds field, so this schedule fires every second.
  const h: Harness = await startHarness(NO_UPSTREAM, { audit: { cleanup_schedule: '* * * * * *', retention_days: 30 } });
  try {
    insertAgedRows(h.dbPath, 'old', 50, '-31 days');
    insertAgedRows(h.dbPath, 'kept', 5, '-29 days');
    insertAgedRows(h.dbPath, 'fresh', 5, '-1 minutes');

    const remaining = () => {
      const c = countTagged(h.dbPath, 'old');
      return c.decisions + c.outcomes;
    };
    const deadline = Date.now() + 3500;
    while (remaining() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    t.deepEqual(countTagged(h.dbPath, 'old'), { decisions: 0, outcomes: 0 }, 'aged rows are gone within a few seconds');
    t.deepEqual(countTagged(h.dbPath, 'kept'), { decisions: 5, outcomes: 5 });
    t.deepEqual(countTagged(h.dbPath, 'fresh'), { decisions: 5, outcomes: 5 });
  } finally {
    // A per-second schedule left running would only produce noise for the rest of the file.
    await h.close();
  }
});

test('the schedule is evaluated in UTC', async (t) => {
  t.not(new Date(Date.UTC(2024, 0, 7, 2)).getHours(), 2, 'this process does not run in UTC');
  const h: Harness = await startHarness(NO_UPSTREAM, { audit: { cleanup_schedule: '0 2 * * 0' } });
  try {
    const tasks = [...cron.getTasks().values()].filter((task) => task.name === 'govgate-audit-retention' && task.getPattern() === '0 2 * * 0');
    t.is(tasks.length, 1, 'the gateway registered its retention task');
    const next = tasks[0]!.getNextRun();
    t.truthy(next);
    // Sunday 02:00 UTC, whatever the machine's local zone.
    t.deepEqual([next!.getUTCDay(), next!.getUTCHours(), next!.getUTCMinutes()], [0, 2, 0]);
  } finally {
    await h.close();
  }
});
