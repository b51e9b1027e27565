import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from '../../gateway/store/connection.js';
import { WalCheckpointer } from '../../gateway/audit/wal-checkpointer.js';
import { WalPin } from '../../gateway/audit/wal-pin.js';

/**
 * The checkpointer's pin (wal-pin.ts): a WAL copied back to its end is not
 * started over by the next commit, so the commit a request waits for never
 * writes and syncs a WAL header. SQLite counts every start in the header's
 * checkpoint sequence number (bytes 12 to 15, https://sqlite.org/fileformat2.html#walformat).
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const walStarts = (file: string) => readFileSync(`${file}-wal`).readUInt32BE(12);

async function withFile(run: (writer: Db, file: string, dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-wal-pin-'));
  const file = path.join(dir, 'audit.db');
  const writer = openDatabase(file, { synchronous: 'NORMAL', checkpointsElsewhere: true });
  try {
    writer.exec('CREATE TABLE filler (payload BLOB)');
    await run(writer, file, dir);
  } finally {
    writer.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function insert(db: Db, rows = 1): void {
  const statement = db.prepare('INSERT INTO filler (payload) VALUES (randomblob(100))');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) statement.run();
  })();
}

test('a commit after a copy that reached the pin appends to the WAL; without the pin it starts the WAL over', async (t) => {
  await withFile((writer, file) => {
    const checkpointer = new Database(file, { fileMustExist: true });
    const pin = new WalPin(file);
    try {
      for (const pinned of [false, true]) {
        for (let round = 0; round < 3; round++) {
          insert(writer);
          if (pinned) pin.renew();
          const [copy] = checkpointer.pragma('wal_checkpoint(PASSIVE)') as [{ busy: number; log: number; checkpointed: number }];
          t.is(copy.checkpointed, copy.log, 'everything up to the pin is copied back');
          const starts = walStarts(file);
          insert(writer);
          t.is(walStarts(file), pinned ? starts : starts + 1, pinned ? 'appended' : 'started over');
        }
      }
    } finally {
      pin.close();
      checkpointer.close();
    }
  });
});

/** Rows of `filler` in the database file alone, without its WAL (-1 while a copy back is half done). */
function rowsInFileAlone(file: string, dir: string): number {
  const alone = path.join(dir, 'alone.db');
  rmSync(`${alone}-wal`, { force: true });
  copyFileSync(file, alone);
  const copy = new Database(alone);
  try {
    return (copy.prepare('SELECT count(*) AS n FROM filler').get() as { n: number }).n;
  } catch {
    return -1;
  } finally {
    copy.close();
  }
}

test("the checkpointer's thread copies an idle WAL back, and the next commit appends to it", async (t) => {
  await withFile(async (writer, file, dir) => {
    const checkpointer = new WalCheckpointer(file, 64 * 1024 * 1024, { onError: (code) => t.fail(code), onPinned() {}, onDied() {} });
    try {
      let rows = 0;
      for (let pause = 0; pause < 3; pause++) {
        insert(writer, 50);
        rows += 50;
        const starts = walStarts(file);
        const deadline = Date.now() + 10_000;
        while (rowsInFileAlone(file, dir) !== rows && Date.now() < deadline) await sleep(50);
        t.is(rowsInFileAlone(file, dir), rows, 'the database file alone holds every row: the WAL was copied back');
        // A tick or two more with nothing written, as when a gateway is idle.
        await sleep(250);
        insert(writer);
        rows += 1;
        t.is(walStarts(file), starts, 'the commit after the pause appended to the WAL');
      }
    } finally {
      await checkpointer.stop();
      checkpointer.release();
    }
  });
});
