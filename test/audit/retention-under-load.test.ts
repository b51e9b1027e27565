import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import type { ScheduledJob } from '../../gateway/audit/background-schedule.js';
import { scheduleCleanup, type WalProgress } from '../../gateway/audit/cleanup-schedule.js';
import { MAX_HOLD_OFF_MS, pruneAuditRows } from '../../gateway/audit/retention.js';
import { verifyAuditChain } from '../../gateway/audit/verify-chain.js';
import { writeAuditRows } from '../helpers/audit-rows.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';

/**
 * Issue 4, point 6: pruning a backlog while serving. What the figure itself
 * looks like is the benchmark's job (`npm run bench:audit`); these tests pin
 * down the mechanisms it rests on, without timing anything that a slow
 * machine could make fail:
 *  - the WAL stays short while the prune and the gateway write in turn (the
 *    checkpointer resets it early and often; left to grow, a prune took it
 *    past 375 MiB, and resetting it then held the write lock for seconds);
 *  - the prune runs on the audit writer's connection between its commits,
 *    and holds off before each batch while decisions wait for their commit
 *    or the checkpointer is behind, and pauses, however long, while the WAL
 *    is near its limit;
 *  - a stop ends it between two batches.
 */

const EXPIRED_ROWS = 30_000;
const LOOPS = 8;
const SAMPLE_MS = 20;
const PRUNE_DEADLINE_MS = 120_000;
/**
 * Twice audit.wal_limit_bytes as shipped (64 MiB). The checkpointer resets
 * the WAL once 16 MiB were copied back, checking every 100 ms (19–44 MiB seen
 * here), and past the limit escalates; without early resets the same prune
 * took the WAL past 375 MiB.
 */
const WAL_BOUND_BYTES = 2 * 64 * 1024 * 1024;

let upstream: MockUpstream;
const cleanups: (() => Promise<void> | void)[] = [];

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
  await upstream?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh audit file holding `rows` decisions and outcomes written `ageDays` ago by the gateway's own writer. */
async function expiredTrail(rows: number, ageDays: number): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-prune-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'audit.db');
  await writeAuditRows(file, rows, ageDays, true);
  return file;
}

test('the gateway prunes a backlog under load with its WAL kept short, answering every request', async (t) => {
  const file = await expiredTrail(EXPIRED_ROWS, 100);
  const h: Harness = await startHarness(upstream.url, { audit: { path: file, retention_days: 90, cleanup_schedule: '* * * * * *' } });
  cleanups.push(() => h.close());
  const { key } = h.createKey('acme', 'prune');
  const reader = openDatabase(file, { synchronous: 'NORMAL', readonly: true });
  cleanups.push(() => void reader.close());
  const oldest = reader.prepare('SELECT created_at FROM usagelog_outcome ORDER BY rowid LIMIT 1').pluck();
  const cutoff = sqliteTime(new Date(Date.now() - 90 * 86_400_000));

  let stopped = false;
  const statuses: number[] = [];
  const loop = async () => {
    while (!stopped) {
      const res = await fetch(`${h.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'prune' }] }),
      });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
  };
  const loops = Array.from({ length: LOOPS }, loop);
  let walMax = 0;
  const started = Date.now();
  try {
    while (((oldest.get() as string | undefined) ?? '9') < cutoff) {
      if (Date.now() - started > PRUNE_DEADLINE_MS) throw new Error('the backlog was not pruned in time');
      walMax = Math.max(walMax, statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0);
      await sleep(SAMPLE_MS);
    }
  } finally {
    stopped = true;
    await Promise.all(loops);
  }

  t.true(statuses.length > 0);
  t.deepEqual([...new Set(statuses)], [200], 'every request during the prune was answered');
  t.log(`largest WAL during the prune: ${(walMax / 2 ** 20).toFixed(1)} MiB`);
  t.true(walMax < WAL_BOUND_BYTES);
  const report = verifyAuditChain(reader, { retentionDays: 90 });
  t.true(report.ok, report.ok ? '' : JSON.stringify(report.broken));
  t.is(reader.prepare('SELECT count(*) FROM usagelog').pluck().get(), statuses.length, 'what is left is exactly the rows written during the prune');
  const metrics = await (await fetch(`${h.url}/metrics`)).text();
  t.regex(metrics, /^govgate_audit_lock_wait_seconds_count [1-9]/m, 'commits report how long they waited for the lock');
  t.regex(metrics, /^govgate_audit_prune_batch_seconds_count [1-9]/m, 'the prune reports its batches');
});

test('while the gateway asks it to hold off, each prune batch waits first', async (t) => {
  const rows = 2000;
  const file = await expiredTrail(rows, 100);
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  cleanups.push(() => void db.close());
  // A gateway that always has decisions pending: every batch waits for it, as long as a batch may.
  const events: string[] = [];
  const started = performance.now();
  const result = await pruneAuditRows(db, 90, { holdOff: () => (events.push('asked'), true), onBatch: () => events.push('batch') });
  const elapsed = performance.now() - started;
  t.deepEqual(result, { decisions: rows, outcomes: rows });
  const batches = events.filter((e) => e === 'batch').length;
  t.true(batches > 1);
  t.true(events.every((e, i) => e === 'asked' || events[i - 1] === 'asked'), 'the gateway was asked before each batch');
  t.true(elapsed >= batches * MAX_HOLD_OFF_MS, `${batches} batches took ${elapsed.toFixed(0)} ms`);
});

test('while the gateway asks it to pause, no batch starts, however long that takes', async (t) => {
  const rows = 500;
  const file = await expiredTrail(rows, 100);
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  cleanups.push(() => void db.close());
  const pausedFor = 4 * MAX_HOLD_OFF_MS;
  const started = performance.now();
  const batches: number[] = [];
  const result = await pruneAuditRows(db, 90, {
    pauseWhile: () => performance.now() - started < pausedFor,
    onBatch: () => void batches.push(performance.now() - started),
  });
  t.deepEqual(result, { decisions: rows, outcomes: rows });
  t.true(batches[0]! >= pausedFor, `first batch at ${batches[0]?.toFixed(0)} ms, paused for ${pausedFor} ms`);
});

/** The times of the batches of the gateway's scheduled prune, given what its writer and its checkpointer say. */
async function scheduledBatchTimes(pending: boolean, wal: WalProgress): Promise<number[]> {
  const file = await expiredTrail(300, 100);
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  cleanups.push(() => void db.close());
  const times: number[] = [];
  let job: ScheduledJob | undefined;
  const done = new Promise<void>((resolve, reject) => {
    job = scheduleCleanup({ cleanupSchedule: '* * * * * *', retentionDays: 90 }, db, { decisionsPending: pending }, wal, {
      onBatch: () => void times.push(performance.now()),
      onLongPause() {},
      onDone: () => resolve(),
      onError: reject,
    });
  });
  try {
    await done;
  } finally {
    await job!.stop();
  }
  return times;
}

for (const [pending, behind] of [[true, false], [false, true]] as const) {
  test(`the scheduled prune holds off while ${pending ? 'decisions are pending' : 'the checkpointer is behind'}`, async (t) => {
    const times = await scheduledBatchTimes(pending, { behind, nearLimit: false });
    const gaps = times.slice(1).map((at, i) => at - times[i]!);
    t.true(gaps.length > 1);
    // Timers may fire a millisecond early; a batch that did not hold off follows the last by about 2 ms.
    t.true(gaps.every((gap) => gap >= MAX_HOLD_OFF_MS - 2), gaps.map((g) => g.toFixed(1)).join(' '));
  });
}

test('the scheduled prune pauses while the WAL is near its limit', async (t) => {
  const pausedFor = 4 * MAX_HOLD_OFF_MS;
  let since: number | undefined;
  // The clock starts when the prune first asks, so the cron job's own start does not count.
  const wal = { behind: false, get nearLimit() { since ??= performance.now(); return performance.now() - since < pausedFor; } };
  const times = await scheduledBatchTimes(false, wal);
  t.true(times.length > 1);
  t.true(times[0]! - since! >= pausedFor, `first batch ${(times[0]! - since!).toFixed(0)} ms after the first question`);
});

test('a stopped prune ends between two batches and reports what it deleted', async (t) => {
  const rows = 2000;
  const file = await expiredTrail(rows, 100);
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  cleanups.push(() => void db.close());
  const stop = new AbortController();
  let batches = 0;
  const result = await pruneAuditRows(db, 90, {
    signal: stop.signal,
    // Asked once before each batch: stop after the second.
    holdOff: () => {
      if (++batches === 3) stop.abort();
      return false;
    },
  });
  const left = db.prepare('SELECT count(*) FROM usagelog').pluck().get() as number;
  t.true(result.decisions > 0 && result.decisions < rows, `deleted ${result.decisions}`);
  t.is(result.outcomes, 0);
  t.is(left, rows - result.decisions, 'the count reported is what was deleted');
  const report = verifyAuditChain(db, { retentionDays: 90 });
  t.true(report.ok, report.ok ? '' : JSON.stringify(report.broken));
});
