import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { AdminQueries } from '../../gateway/admin/admin-queries.js';
import { DashboardData } from '../../gateway/admin/dashboard-data.js';
import type { DashboardSource } from '../../gateway/admin/dashboard-source.js';
import { appendControlEvent, controlEvent } from '../../gateway/audit/control-log.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import type { Cause } from '../../gateway/policy/policy-types.js';
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

const RESTRICTED: Cause[] = [{ kind: 'rule', rule: 'restricted-data' }];

let seq = 0;
/**
 * A decision row at `at`, written by the sqlite3 CLI. `causes: null` is a row
 * from before causes were recorded; the reason is prose the dashboard no longer reads.
 */
function row(file: string, at: Date, opts: { allowed?: boolean; risk?: number; customer?: string; model?: string; causes?: Cause[] | null; tokens?: number } = {}): void {
  const id = `row-${++seq}`;
  const allowed = opts.allowed ?? true;
  const causes = opts.causes === undefined ? (allowed ? [] : RESTRICTED) : opts.causes;
  const sql = [
    `INSERT INTO usagelog (id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, causes, created_at)
     VALUES ('${id}', '${opts.customer ?? 'acme'}', 'key_1', '${opts.model ?? 'gpt-4o-mini'}', 'chat.completions', '{}', ${opts.risk ?? 0}, ${allowed ? 1 : 0},
             '${allowed ? 'allowed' : 'blocked'}', ${causes === null ? 'NULL' : `'${JSON.stringify(causes)}'`}, '${sqliteTime(at)}');`,
  ];
  if (opts.tokens !== undefined) {
    sql.push(`INSERT INTO usagelog_outcome (log_id, status, duration_ms, total_tokens, created_at) VALUES ('${id}', 200, 1, ${opts.tokens}, '${sqliteTime(at)}');`);
  }
  const r = sqliteRaw(file, sql.join('\n'));
  if (r.status !== 0) throw new Error(r.stderr);
}

test('hours and days are bucketed in UTC over exactly the last 24 hours and 30 days', async (t) => {
  const file = freshDb();
  const now = new Date('2026-11-27T19:40:00Z');
  const h0 = new Date('2026-11-27T19:00:00Z').getTime();
  row(file, new Date(h0), { tokens: 10 });
  row(file, new Date(h0 + 30 * 60_000), { risk: 95, allowed: false, causes: [{ kind: 'risk_threshold', score: 95, threshold: 70 }] });
  row(file, new Date(h0 - 5 * HOUR + 1), { allowed: false, customer: 'globex', risk: 45 });
  row(file, new Date(h0 - 23 * HOUR), { customer: 'globex', tokens: 5 });
  row(file, new Date(h0 - 23 * HOUR - 1), { risk: 99 });
  row(file, new Date('2026-11-17T00:00:00Z'));
  row(file, new Date('2026-10-29T00:00:00Z'));
  row(file, new Date('2026-10-28T23:59:59.999Z'));

  const queries = new AdminQueries(file);
  cleanups.push(() => queries.close());
  const s = await new DashboardData(queries).summary(now);

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
  const data = new DashboardData(queries);
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
  t.regex(plans.blockedCauses!, /SEARCH usagelog USING COVERING INDEX usagelog_blocked_cause \(created_at>\? AND created_at<\?\)/);
  t.regex(plans.tokens!, /SEARCH u USING .*INDEX usagelog_created_at\w* \(created_at>\? AND created_at<\?\)/);
  t.regex(plans.tokens!, /SEARCH o USING INDEX sqlite_autoindex_usagelog_outcome_1 \(log_id=\?\)/);
  for (const plan of Object.values(plans)) t.notRegex(plan, /SCAN usagelog/);
});

test('blocking causes are counted from the causes column: once per distinct cause of a row, NULL as not recorded', async (t) => {
  const file = freshDb();
  const now = new Date('2026-11-27T19:40:00Z');
  const at = new Date('2026-11-27T18:15:00Z');
  const both: Cause[] = [{ kind: 'rule', rule: 'restricted-data' }, { kind: 'max_tokens', cap: 100 }];
  row(file, at, { allowed: false, causes: both });
  row(file, at, { allowed: false, causes: both });
  row(file, at, { allowed: false, causes: [{ kind: 'limit', limit: 'tokens_per_day' }] });
  row(file, at, { allowed: false, causes: [{ kind: 'refused', code: 'invalid_batch_line', line: 3 }, { kind: 'refused', code: 'invalid_batch_line', line: 9 }] });
  row(file, at, { allowed: false, causes: null });
  row(file, at, { allowed: true, causes: [{ kind: 'rule', rule: 'monitored' }] });

  const queries = new AdminQueries(file);
  cleanups.push(() => queries.close());
  const s = await new DashboardData(queries).summary(now);
  t.deepEqual(s.blocking, [
    { cause: 'limit max_tokens', count: 2 },
    { cause: 'rule restricted-data', count: 2 },
    { cause: 'cause not recorded', count: 1 },
    { cause: 'limit tokens_per_day', count: 1 },
    { cause: 'refused: invalid_batch_line', count: 1 },
  ], 'an allowed row (monitor mode) is not a block, whatever its causes');
});

test('the changes are the newest 20 control events, newest first, summarised', async (t) => {
  const file = freshDb();
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  for (let i = 1; i <= 22; i++) appendControlEvent(db, controlEvent('admin.login_failed', `10.0.0.${i}`, { address: `10.0.0.${i}` }));
  appendControlEvent(db, controlEvent('policy.rejected', 'gateway', { path: 'config/policy.yaml', line: 3, col: 18, key: 'block_threshold', error: 'quoted: sk-live-secret' }));
  db.close();

  const queries = new AdminQueries(file);
  cleanups.push(() => queries.close());
  const { changes } = await new DashboardData(queries).summary(new Date());
  t.is(changes.length, 20);
  t.like(changes[0], { kind: 'policy.rejected', actor: 'gateway', summary: 'edit rejected at line 3, col 18, block_threshold' });
  t.deepEqual(changes.slice(1).map((c) => c.actor), Array.from({ length: 19 }, (_, i) => `10.0.0.${22 - i}`), 'same-millisecond events keep their commit order');
  t.like(changes[1], { kind: 'admin.login_failed', summary: '10.0.0.22' });
  t.false(JSON.stringify(changes).includes('sk-live-secret'), 'an error message is never shown');
});

test('from a fleet source: customers summed over gateways, a per-gateway breakdown, and each change names its gateway', async (t) => {
  const now = new Date('2026-11-27T19:40:00Z');
  const seen: (string | null)[] = [];
  // Two gateways' rows in the hour in progress only; the source records which scope each statement was asked for.
  const fleet: DashboardSource = {
    fleet: true,
    hourCounts: (from, _to, gateway) => (seen.push(gateway), from === '2026-11-27 19:00:00.000' ? { allowed: 3, blocked: 2, risk: [5, 0, 0, 0, 0, 0, 0, 0, 0, 0] } : { allowed: 0, blocked: 0, risk: new Array<number>(10).fill(0) }),
    groups: (from) => (from === '2026-11-27 19:00:00.000'
      ? [
        { gateway_id: 'gw-a', customer_id: 'acme', model: 'm', requests: 3, blocked: 1, risk_sum: 30 },
        { gateway_id: 'gw-b', customer_id: 'acme', model: 'm', requests: 2, blocked: 1, risk_sum: 20 },
      ]
      : []),
    // Tokens are read a quarter of an hour at a time.
    tokens: (from) => (from === '2026-11-27 19:00:00.000' ? [{ gateway_id: 'gw-a', customer_id: 'acme', model: 'm', tokens: 18 }] : []),
    blockedCauses: () => [],
    latest: () => [],
    changes: (_limit, gateway) => [{ gateway_id: gateway ?? '@fleet', created_at: '2026-11-27 19:01:00.000', kind: 'gateway.stopped', actor: 'gateway', detail: '{"pid":7}' }],
  };
  const all = await new DashboardData(fleet).summary(now);
  t.is(all.gateway, null);
  t.deepEqual(all.customers, [{ customer: 'acme', model: 'm', requests: 5, blocked: 2, avg_risk: 10, tokens: 18 }]);
  t.deepEqual(all.gateways, [
    { gateway: 'gw-a', requests: 3, blocked: 1, tokens: 18 },
    { gateway: 'gw-b', requests: 2, blocked: 1, tokens: null },
  ]);
  t.deepEqual(all.changes, [{ created_at: '2026-11-27 19:01:00.000', kind: 'gateway.stopped', actor: 'gateway', summary: 'pid 7', gateway: '@fleet' }]);
  t.true(seen.every((g) => g === null));

  seen.length = 0;
  const one = await new DashboardData(fleet, 'gw-b').summary(now);
  t.is(one.gateway, 'gw-b');
  t.is(one.changes[0]!.gateway, 'gw-b');
  t.true(seen.length > 0 && seen.every((g) => g === 'gw-b'), 'every statement is asked for the one gateway');
});
