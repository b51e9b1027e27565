import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { AdminQueries } from '../../gateway/admin/admin-queries.js';
import { DashboardData } from '../../gateway/admin/dashboard-data.js';
import { openDatabase, sqliteTime } from '../../gateway/audit/database.js';
import { sqliteRaw } from '../helpers/sqlite-cli.js';

const HOUR = 3_600_000;
const cleanups: (() => void)[] = [];
test.after.always(() => cleanups.reverse().forEach((c) => c()));

function freshDb(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-dashboard-'));
  const file = path.join(dir, 'audit.db');
  openDatabase(file, { synchronous: 'NORMAL' }).close();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return file;
}

let seq = 0;
/** A decision row at `at`, written by the sqlite3 CLI. */
function row(file: string, at: Date, opts: { allowed?: boolean; risk?: number; customer?: string; model?: string; reason?: string; tokens?: number } = {}): void {
  const id = `row-${++seq}`;
  const allowed = opts.allowed ?? true;
  const sql = [
    `INSERT INTO usagelog (id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at)
     VALUES ('${id}', '${opts.customer ?? 'acme'}', 'key_1', '${opts.model ?? 'gpt-4o-mini'}', 'chat.completions', '{}', ${opts.risk ?? 0}, ${allowed ? 1 : 0},
             '${opts.reason ?? (allowed ? 'allowed' : 'rule restricted-data: no')}', '${sqliteTime(at)}');`,
  ];
  if (opts.tokens !== undefined) {
    sql.push(`INSERT INTO usagelog_outcome (log_id, status, duration_ms, total_tokens, created_at) VALUES ('${id}', 200, 1, ${opts.tokens}, '${sqliteTime(at)}');`);
  }
  const r = sqliteRaw(file, sql.join('\n'));
  if (r.status !== 0) throw new Error(r.stderr);
}

const RULES = [{ id: 'restricted-data', reason: 'no', description: null, when: [], risk: 0, block: true }];

test('hours and days are bucketed in UTC over exactly the last 24 hours and 30 days', async (t) => {
  const file = freshDb();
  const now = new Date('2026-11-27T19:40:00Z');
  const h0 = new Date('2026-11-27T19:00:00Z').getTime();
  row(file, new Date(h0), { tokens: 10 });
  row(file, new Date(h0 + 30 * 60_000), { risk: 95, allowed: false, reason: 'risk_score 95 >= block_threshold 70: rules x (95)' });
  row(file, new Date(h0 - 5 * HOUR + 1), { allowed: false, customer: 'globex', risk: 45 });
  row(file, new Date(h0 - 23 * HOUR), { customer: 'globex', tokens: 5 });
  row(file, new Date(h0 - 23 * HOUR - 1), { risk: 99 });
  row(file, new Date('2026-11-17T00:00:00Z'));
  row(file, new Date('2026-10-29T00:00:00Z'));
  row(file, new Date('2026-10-28T23:59:59.999Z'));

  const queries = new AdminQueries(file);
  cleanups.push(() => queries.close());
  const s = await new DashboardData(queries, () => RULES).summary(now);

  t.is(s.hourly.length, 24);
  t.is(s.hourly[0]!.hour, '2026-11-26 20:00');
  t.is(s.hourly[23]!.hour, '2026-11-27 19:00');
  t.deepEqual(s.hourly[23], { hour: '2026-11-27 19:00', allowed: 1, blocked: 1 });
  t.deepEqual(s.hourly[18], { hour: '2026-11-27 14:00', allowed: 0, blocked: 1 });
  t.deepEqual(s.hourly[0], { hour: '2026-11-26 20:00', allowed: 1, blocked: 0 });
  t.is(s.hourly.reduce((n, h) => n + h.allowed + h.blocked, 0), 4, 'the row a millisecond before the window is out');

  t.is(s.daily.length, 30);
  t.is(s.daily[0]!.day, '2026-10-29');
  t.is(s.daily[29]!.day, '2026-11-27');
  t.deepEqual(s.daily[29], { day: '2026-11-27', allowed: 1, blocked: 2 });
  t.deepEqual(s.daily[28], { day: '2026-11-26', allowed: 2, blocked: 0 });
  t.deepEqual(s.daily.find((d) => d.day === '2026-11-17'), { day: '2026-11-17', allowed: 1, blocked: 0 });
  t.deepEqual(s.daily[0], { day: '2026-10-29', allowed: 1, blocked: 0 });
  t.is(s.daily.reduce((n, d) => n + d.allowed + d.blocked, 0), 8 - 1);

  t.deepEqual(s.risk.map((b) => b.count), [2, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
  t.deepEqual(s.risk.at(-1), { from: 90, to: 100, count: 1 });
  t.deepEqual(s.blocking, [
    { cause: 'risk_score over block_threshold', count: 1 },
    { cause: 'rule restricted-data', count: 1 },
  ]);
  t.deepEqual(s.customers, [
    { customer: 'acme', model: 'gpt-4o-mini', requests: 2, blocked: 1, avg_risk: 47.5, tokens: 10 },
    { customer: 'globex', model: 'gpt-4o-mini', requests: 2, blocked: 1, avg_risk: 22.5, tokens: 5 },
  ]);
});

test('finished hours are served from the cache; the hour in progress is re-read after 2 seconds', async (t) => {
  const file = freshDb();
  const now = new Date('2026-11-27T19:40:00Z');
  const queries = new AdminQueries(file);
  cleanups.push(() => queries.close());
  const data = new DashboardData(queries, () => RULES);
  t.is((await data.summary(now)).hourly.reduce((n, h) => n + h.allowed, 0), 0);

  row(file, new Date('2026-11-27T15:10:00Z'));
  row(file, new Date('2026-11-27T19:10:00Z'));
  const soon = await data.summary(new Date(now.getTime() + 1000));
  t.is(soon.hourly[23]!.allowed, 0, 'within 2 seconds the cached current hour is served');
  const later = await data.summary(new Date(now.getTime() + 3000));
  t.is(later.hourly[23]!.allowed, 1, 'the current hour is re-read');
  t.is(later.hourly.find((h) => h.hour === '2026-11-27 15:00')!.allowed, 0, 'a finished hour stays cached');
  const muchLater = await data.summary(new Date(now.getTime() + 61 * 60_000));
  t.is(muchLater.hourly.find((h) => h.hour === '2026-11-27 15:00')!.allowed, 1, 'a finished hour is re-read within the hour');
});

test('every aggregate reads an index, never the table', (t) => {
  const queries = new AdminQueries(freshDb());
  cleanups.push(() => queries.close());
  const plans = queries.plans();
  t.regex(plans.hourCounts!, /SEARCH usagelog USING COVERING INDEX usagelog_created_at_summary \(created_at>\? AND created_at<\?\)/);
  t.regex(plans.groups!, /SEARCH usagelog USING COVERING INDEX usagelog_created_at_summary \(created_at>\? AND created_at<\?\)/);
  t.regex(plans.blockedReasons!, /SEARCH usagelog USING COVERING INDEX usagelog_blocked_reason \(created_at>\? AND created_at<\?\)/);
  t.regex(plans.tokens!, /SEARCH u USING .*INDEX usagelog_created_at\w* \(created_at>\? AND created_at<\?\)/);
  t.regex(plans.tokens!, /SEARCH o USING INDEX sqlite_autoindex_usagelog_outcome_1 \(log_id=\?\)/);
  for (const plan of Object.values(plans)) t.notRegex(plan, /SCAN usagelog/);
});
