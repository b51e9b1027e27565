import type { Worker } from 'node:worker_threads';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { controlEvent } from '../../gateway/audit/control-log.js';
import { verifyAuditChain } from '../../gateway/audit/verify-chain.js';
import { AuditWriterThread } from '../../gateway/audit/writer-thread.js';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { AuditStoreError, StoreFile } from '../../gateway/store/store-file.js';
import { syntheticDecision, syntheticOutcome } from '../helpers/audit-rows.js';

/**
 * Issue 18: the audit writer on its own thread. A decision's promise settles
 * only once the thread committed it; refusals keep their class and code across
 * the thread boundary (the gateway matches on them); close() commits what is
 * queued, outcomes included.
 */

interface Store {
  file: string;
  reader: Db;
  commits: number[];
  failures: unknown[];
  writer: AuditWriterThread;
  remove(): Promise<void>;
}

function store(): Store {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-writer-thread-'));
  const file = path.join(dir, 'audit.db');
  // The gateway's own connection migrates the file before the thread opens its own.
  const reader = openDatabase(file, { synchronous: 'NORMAL' });
  const commits: number[] = [];
  const failures: unknown[] = [];
  const writer = new AuditWriterThread(new StoreFile(file), 'NORMAL', { onCommit: (ms) => commits.push(ms), onFailure: (err) => failures.push(err) });
  return {
    file, reader, commits, failures, writer,
    async remove() {
      await writer.close(0);
      reader.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const count = (db: Db, table: string) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;

test('each decision is committed, in the chain, when its promise resolves; outcomes are committed by close()', async (t) => {
  const s = store();
  try {
    const now = sqliteTime();
    s.writer.recordControl(controlEvent('gateway.started', 'gateway', { pid: 1 }));
    // One turn's worth: a single message to the thread, a single group commit.
    const firstTurn = Array.from({ length: 40 }, (_, i) => s.writer.record(syntheticDecision(i, now)).then(() => count(s.reader, 'usagelog')));
    const seen = await Promise.all(firstTurn);
    t.true(seen.every((n) => n >= 40), 'every promise resolved after the whole group was committed');
    await s.writer.record(syntheticDecision(40, now));
    t.is(count(s.reader, 'usagelog'), 41);
    t.is(count(s.reader, 'audit_event'), 1, 'the control event went with the first commit');
    t.true(s.commits.length >= 2, 'the thread reports its commits for the metrics');

    for (let i = 0; i < 41; i++) s.writer.recordOutcome(syntheticOutcome(i, now));
    t.true(s.writer.queued >= 41, 'queued outcomes are counted while they wait');
    await s.writer.close(0);
    t.is(count(s.reader, 'usagelog_outcome'), 41, 'close() committed the queued outcomes');
    const report = verifyAuditChain(s.reader);
    t.true(report.ok, JSON.stringify(report));
    t.is(s.failures.length, 0);
  } finally {
    await s.remove();
  }
});

test('a refusal crosses the thread with its class and code; the store is failing until a commit succeeds', async (t) => {
  const s = store();
  try {
    await s.writer.record(syntheticDecision(0, sqliteTime()));
    chmodSync(s.file, 0o444);
    const err = await t.throwsAsync(s.writer.record(syntheticDecision(1, sqliteTime())));
    t.true(err instanceof AuditStoreError);
    t.is((err as AuditStoreError).code, 'audit_file_read_only');
    t.true(s.writer.failing);
    t.is((s.writer.failure as { code?: string }).code, 'audit_file_read_only');
    t.is(s.failures.length, 1, 'the failure is reported once, for the log, the metric and Sentry');

    chmodSync(s.file, 0o644);
    await s.writer.record(syntheticDecision(2, sqliteTime()));
    t.false(s.writer.failing, 'a commit that succeeds ends the failure');
    t.false(s.writer.decisionsPending);
    t.is(count(s.reader, 'usagelog'), 2, 'the refused decision was not written');
  } finally {
    chmodSync(s.file, 0o644);
    await s.remove();
  }
});

test('a decision the database itself refuses keeps SQLite\'s code across the thread', async (t) => {
  const s = store();
  try {
    // A trigger on the file (not TEMP: the thread has its own connection) that refuses every decision.
    s.reader.exec("CREATE TRIGGER refuse_decisions BEFORE INSERT ON usagelog BEGIN SELECT RAISE(ABORT, 'refused for the test'); END");
    const err = await t.throwsAsync(s.writer.record(syntheticDecision(1, sqliteTime())));
    t.is((err as { code?: string }).code, 'SQLITE_CONSTRAINT_TRIGGER');
    s.reader.exec('DROP TRIGGER refuse_decisions');
    await s.writer.record(syntheticDecision(2, sqliteTime()));
    t.is(count(s.reader, 'usagelog'), 1);
  } finally {
    await s.remove();
  }
});

/** The thread itself failing (a bug, out of memory), as a test can make it: terminated from outside. */
function killThread(writer: AuditWriterThread): Promise<number> {
  return (writer as unknown as { worker: Worker }).worker.terminate();
}

test('when the thread dies, its requests are refused at once, its control events go to the next thread, and close() still commits', async (t) => {
  const s = store();
  try {
    s.writer.recordControl(controlEvent('policy.loaded', 'gateway', { policy_hash: 'd'.repeat(64) }));
    const held = s.writer.record(syntheticDecision(0, sqliteTime()));
    await killThread(s.writer);
    const err = await held.then(() => null, (e: unknown) => e);
    if (err !== null) t.is((err as { code?: string }).code, 'audit_writer_thread_died', 'a decision the thread held is refused, never left waiting');
    t.true(s.writer.failing);
    // The next thread starts 100 ms later; meanwhile decisions are refused at once.
    await s.writer.record(syntheticDecision(1, sqliteTime())).then(() => t.fail('accepted without a thread'), (e: unknown) => t.is((e as { code?: string }).code, 'audit_writer_thread_died'));
    await new Promise((resolve) => setTimeout(resolve, 400));
    await s.writer.record(syntheticDecision(2, sqliteTime()));
    t.false(s.writer.failing, 'a commit on the new thread ends the failure');
    t.deepEqual(s.reader.prepare('SELECT kind FROM audit_event').pluck().all(), ['policy.loaded'], 'the event was committed once, whether or not the first thread got to it');

    // Dying again, then closing within the restart delay: the last event is still committed.
    await killThread(s.writer);
    s.writer.recordControl(controlEvent('gateway.stopped', 'gateway', { pid: 1 }));
    await s.writer.close(0);
    t.is(s.reader.prepare('SELECT kind FROM audit_event ORDER BY rowid DESC LIMIT 1').pluck().get(), 'gateway.stopped');
    t.true(verifyAuditChain(s.reader).ok);
    await t.throwsAsync(s.writer.record(syntheticDecision(3, sqliteTime())), { message: /closed/ });
  } finally {
    await s.remove();
  }
});
