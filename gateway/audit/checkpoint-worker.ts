import { fdatasyncSync, statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { withBusyTimeout } from '../store/connection.js';
import { WalPin } from './wal-pin.js';
import { copyBackAndReset, dataVersion, fullyCopied, type ResetHooks } from './wal-reset.js';

/**
 * Runs in the thread WalCheckpointer starts, on its own connection. Each tick
 * copies the WAL back up to the pin it takes first (wal-pin.ts: the gateway's
 * commits then never start the WAL over, and never sync its header) and
 * resets it early (wal-reset.ts; nothing to do while nothing was committed
 * since the last reset), which keeps it below
 * `limitBytes` whenever no reader holds an old snapshot and this thread gets
 * the CPU (docs/design/audit-writer.md, "The checkpointer needs the CPU").
 *
 * Readers that always overlap (an admin's long queries, a dashboard) keep any
 * reset from happening, and the WAL grows. Past `limitBytes` the worker
 * escalates to TRUNCATE, which holds the write lock while it waits for the
 * readers of old snapshots to finish (new readers are not held up). It waits
 * at most `escalatedWaitMs`, so the gateway's commits are delayed, never
 * refused. If the readers outlast it, the WAL is reported pinned and the next
 * waiting escalation comes `backoffMs` later, doubling up to `maxBackoffMs`
 * (a reader that holds its snapshot for minutes must not turn the escalations
 * into a write lock that is never free); the ticks in between try a TRUNCATE
 * that waits for nobody.
 */
interface CheckpointWorkerData {
  readonly file: string;
  /** The database file, for fsyncs outside SQLite; owned, and closed, by WalCheckpointer. */
  readonly dbFd: number;
  readonly intervalMs: number;
  readonly limitBytes: number;
  readonly resetBytes: number;
  readonly escalatedWaitMs: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /** One Int32: KiB of WAL in use, for the gateway (WalCheckpointer.behind, nearLimit): after each tick, and as a reset starts. */
  readonly inUse: SharedArrayBuffer;
}

const data = workerData as CheckpointWorkerData;
const db = new Database(data.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const walBytes = () => statSync(`${data.file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
const inUse = new Int32Array(data.inUse);
const pageBytes = db.pragma('page_size', { simple: true }) as number;
const pageKiB = pageBytes / 1024;
const resetFrames = Math.ceil(data.resetBytes / pageBytes);
let backoffMs = data.backoffMs;
let escalateAfter = 0;
let resetVersion: number | undefined;
const syncDatabase = () => fdatasyncSync(data.dbFd);
const publishFrames = (frames: number) => Atomics.store(inUse, 0, Math.round(frames * pageKiB));
const pin = new WalPin(data.file);
/** data_version when the pin was last taken; undefined while it is released. */
let pinnedVersion: number | undefined;
const unpin = () => {
  pin.release();
  pinnedVersion = undefined;
};
const resetHooks: ResetHooks = {
  unpin,
  syncDatabase,
  // Published as soon as a reset starts, so that the prune holds off while it settles.
  onResetting: publishFrames,
};

function checkpoint(): void {
  try {
    // Taken again only after a commit: taken on a WAL already copied to its end, the pin would hold nothing back.
    const version = dataVersion(db);
    if (version !== pinnedVersion) {
      pin.renew();
      pinnedVersion = version;
    }
    const copied = copyBackAndReset(db, resetFrames, resetHooks, resetVersion);
    resetVersion = copied.resetVersion;
    // After a reset SQLite still reports the old frame count until the next write: the WAL is empty.
    publishFrames(copied.reset ? 0 : copied.log);
    if (walBytes() <= data.limitBytes) {
      backoffMs = data.backoffMs;
      return;
    }
    unpin();
    // What the PASSIVE copied is synced here, not by the TRUNCATE under the write lock (wal-reset.ts).
    if (!copied.reset) syncDatabase();
    // Everything copied, or between waiting escalations: first a TRUNCATE that waits for nobody and
    // has (almost) nothing left to copy; it shrinks the file the moment no reader is left on the WAL.
    // Readers that always overlap, under writes that never pause, may leave no such moment, so past
    // it the waiting escalation follows even when everything was copied.
    if (fullyCopied(copied) || Date.now() < escalateAfter) {
      db.pragma('wal_checkpoint(TRUNCATE)');
      if (publishFileSize() <= data.limitBytes || Date.now() < escalateAfter) return;
    }
    withBusyTimeout(db, data.escalatedWaitMs, () => db.pragma('wal_checkpoint(TRUNCATE)'));
    const left = publishFileSize();
    if (left > data.limitBytes) {
      parentPort!.postMessage({ pinnedBytes: left });
      escalateAfter = Date.now() + backoffMs;
      backoffMs = Math.min(backoffMs * 2, data.maxBackoffMs);
    }
  } catch (err) {
    // What is in use is unknown: nothing should wait on a figure that may never be updated again.
    Atomics.store(inUse, 0, 0);
    parentPort!.postMessage({ code: (err as { code?: string }).code ?? 'unknown' });
  }
}

/** After a TRUNCATE, what is in use is at most the file: all of it if readers kept it, nothing if it was cut. */
function publishFileSize(): number {
  const bytes = walBytes();
  Atomics.store(inUse, 0, Math.round(bytes / 1024));
  return bytes;
}

// A chain of timeouts, not an interval: a slow checkpoint is always followed by a full interval with the lock free.
let timer = setTimeout(function tick() {
  checkpoint();
  timer = setTimeout(tick, data.intervalMs);
}, data.intervalMs);

parentPort!.on('message', () => {
  clearTimeout(timer);
  checkpoint();
  pin.close();
  db.close();
  parentPort!.close();
});
