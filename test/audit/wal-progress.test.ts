import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { WalCheckpointer } from '../../gateway/audit/wal-checkpointer.js';

/**
 * The gateway's retention holds off while the checkpointer is behind (the WAL
 * holds a reset's worth, a reset is under way, or the thread is gone) and
 * pauses while the WAL is near its limit. The file's size cannot tell either:
 * it stays at its high-water mark after a reset.
 */

const LIMIT = 1024 * 1024;
const DEADLINE_MS = 10_000;
const NO_EVENTS = { onError() {}, onPinned() {}, onDied() {} };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean): Promise<boolean> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** About `bytes` of new pages in the WAL. */
function write(db: Db, bytes: number): void {
  const insert = db.prepare('INSERT INTO filler (payload) VALUES (randomblob(?))');
  db.transaction(() => {
    for (let written = 0; written < bytes; written += 4000) insert.run(4000);
  })();
}

/**
 * A fresh audit file with a gateway-style writer connection and its checkpointer; resolves to the
 * checkpointer once stopped and everything is closed.
 */
async function withCheckpointedFile(run: (db: Db, file: string, checkpointer: WalCheckpointer) => Promise<void>): Promise<WalCheckpointer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-wal-progress-'));
  const file = path.join(dir, 'audit.db');
  const db = openDatabase(file, { synchronous: 'NORMAL', checkpointsElsewhere: true });
  const checkpointer = new WalCheckpointer(file, LIMIT, NO_EVENTS);
  try {
    db.exec('CREATE TABLE filler (payload BLOB)');
    await run(db, file, checkpointer);
  } finally {
    await checkpointer.stop();
    db.close();
    checkpointer.release();
    rmSync(dir, { recursive: true, force: true });
  }
  return checkpointer;
}

test('behind while a reader keeps the WAL from being reset, caught up once it is', async (t) => {
  const stopped = await withCheckpointedFile(async (db, file, checkpointer) => {
    const reader = openDatabase(file, { synchronous: 'NORMAL', readonly: true });
    try {
      t.false(checkpointer.behind);
      // A snapshot taken now pins every frame written after it.
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM filler').get();
      write(db, 2 * LIMIT);
      t.true(await until(() => checkpointer.behind), 'behind with 2 MiB in the WAL and a reset at 512 KiB');
      t.true(checkpointer.nearLimit, 'near the limit: 2 MiB against 1 MiB');
      reader.exec('COMMIT');
      // Reset, with nothing written since: SQLite still counts the old frames until the next write.
      t.true(await until(() => !checkpointer.behind), 'caught up once the reader let go');
      t.false(checkpointer.nearLimit);
    } finally {
      reader.close();
    }
  });
  t.true(stopped.behind, 'without its thread the writer checkpoints inline: writers that can wait should');
  t.false(stopped.nearLimit, 'without its thread nobody knows, and a pause could last for ever');
});

test('not behind once a reset emptied the WAL, though nothing was written since', async (t) => {
  await withCheckpointedFile(async (db, _file, checkpointer) => {
    // More than a reset's worth (half the limit), then nothing: SQLite counts the old frames until the next write.
    write(db, LIMIT * 0.6);
    await sleep(1000);
    t.false(checkpointer.behind);
  });
});
