import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { AuditWriter } from '../../gateway/audit/audit-writer.js';
import { controlEvent, policyVersionRow } from '../../gateway/audit/control-log.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { syntheticDecision } from '../helpers/audit-rows.js';

test('a commit the database refuses loses its decisions, not the control events and policy texts queued with them', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-control-retry-'));
  const file = path.join(dir, 'audit.db');
  const db = openDatabase(file, { synchronous: 'NORMAL', retentionDays: 90 });
  try {
    const failures: unknown[] = [];
    const writer = new AuditWriter(db, new StoreFile(file), { onCommit() {}, onFailure: (err) => failures.push(err) });
    // Not SQLITE_BUSY: the writer does not wait for this one, it fails the batch.
    db.exec("CREATE TEMP TRIGGER refuse_decisions BEFORE INSERT ON usagelog BEGIN SELECT RAISE(ABORT, 'refused for the test'); END");
    writer.recordControl(controlEvent('policy.loaded', 'gateway', { policy_hash: 'c'.repeat(64) }), policyVersionRow({ hash: 'c'.repeat(64), text: 'version: 1\n' }, 'config/policy.yaml'));
    await t.throwsAsync(writer.record(syntheticDecision(1, sqliteTime())), { any: true });
    t.is(failures.length, 1);
    t.is((db.prepare('SELECT count(*) FROM audit_event').pluck().get() as number), 0, 'nothing committed by the failed batch');

    db.exec('DROP TRIGGER refuse_decisions');
    await writer.record(syntheticDecision(2, sqliteTime()));
    t.deepEqual(db.prepare('SELECT kind FROM audit_event').pluck().all(), ['policy.loaded'], 'the event went with the next commit');
    t.deepEqual(db.prepare('SELECT hash FROM policy_version').pluck().all(), ['c'.repeat(64)], 'and so did the policy text');
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
