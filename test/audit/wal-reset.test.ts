import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { copyBackAndReset, type ResetHooks } from '../../gateway/audit/wal-reset.js';

/**
 * The checkpointer's reset (wal-reset.ts). What it costs the gateway is the
 * benchmark's to measure; these pin down the two things that keep it cheap:
 * the database file is synced before the RESTART, while other connections can
 * still write, and a WAL already reset is not reset again.
 */

const RESET_FRAMES = 64;

/** A fresh file with a gateway-style writer connection (no auto-checkpoints) and a checkpointer connection. */
function withFiles(run: (writer: Db, checkpointer: Db, file: string) => void): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-wal-reset-'));
  const file = path.join(dir, 'audit.db');
  const writer = openDatabase(file, { synchronous: 'NORMAL', checkpointsElsewhere: true });
  const checkpointer = new Database(file, { fileMustExist: true });
  try {
    writer.exec('CREATE TABLE filler (payload BLOB)');
    run(writer, checkpointer, file);
  } finally {
    checkpointer.close();
    writer.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Well over RESET_FRAMES pages of WAL. */
function write(db: Db): void {
  const insert = db.prepare('INSERT INTO filler (payload) VALUES (randomblob(4000))');
  db.transaction(() => {
    for (let i = 0; i < 2 * RESET_FRAMES; i++) insert.run();
  })();
}

/** Records the RESTART among the hooks' events. */
function spyOnRestart(db: Db, events: string[]): void {
  const pragma = db.pragma.bind(db);
  db.pragma = ((source: string, options?: Database.PragmaOptions) => {
    if (source.includes('RESTART')) events.push('restart');
    return pragma(source, options);
  }) as Db['pragma'];
}

function recordingHooks(events: string[], duringSync: () => void = () => {}): ResetHooks {
  return {
    unpin: () => void events.push('unpin'),
    syncDatabase: () => {
      events.push('sync');
      duringSync();
    },
    onResetting: (frames) => void events.push(`resetting ${frames >= RESET_FRAMES ? 'enough' : frames}`),
  };
}

test('a reset syncs the database file before its RESTART, while other connections can still write', (t) => {
  withFiles((writer, checkpointer, file) => {
    write(writer);
    const events: string[] = [];
    spyOnRestart(checkpointer, events);
    const other = new Database(file, { fileMustExist: true });
    try {
      other.pragma('busy_timeout = 0');
      const result = copyBackAndReset(checkpointer, RESET_FRAMES, recordingHooks(events, () => {
        // Throws SQLITE_BUSY if the write lock were held while the database file is synced.
        other.prepare('INSERT INTO filler (payload) VALUES (NULL)').run();
        events.push('someone wrote');
      }));
      t.true(result.reset);
    } finally {
      other.close();
    }
    t.deepEqual(events, ['unpin', 'resetting enough', 'sync', 'someone wrote', 'restart']);
  });
});

test('a WAL that is still empty since its last reset is not reset again', (t) => {
  withFiles((writer, checkpointer) => {
    write(writer);
    const first = copyBackAndReset(checkpointer, RESET_FRAMES, recordingHooks([]));
    t.true(first.reset);
    const events: string[] = [];
    spyOnRestart(checkpointer, events);
    const again = copyBackAndReset(checkpointer, RESET_FRAMES, recordingHooks(events), first.resetVersion);
    t.true(again.reset, 'still reset');
    t.is(again.resetVersion, first.resetVersion);
    t.deepEqual(events, [], 'no lock taken, no sync');
    write(writer);
    const afterWrites = copyBackAndReset(checkpointer, RESET_FRAMES, recordingHooks(events), again.resetVersion);
    t.true(afterWrites.reset);
    t.deepEqual(events, ['unpin', 'resetting enough', 'sync', 'restart'], 'new frames are reset again');
  });
});
