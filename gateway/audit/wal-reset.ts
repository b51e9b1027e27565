import { withBusyTimeout, type Db } from './database.js';

/**
 * The WAL is reused from its start only once everything in it was copied back
 * into the database before the next write, which never happens by itself
 * while writes keep coming (the gateway's commits, a prune's batches): left
 * alone it grows until a checkpoint resets it, and resetting a large WAL held
 * the write lock for a long time (40-50 ms to truncate 73 MB; seconds when a
 * prune had grown it to gigabytes). Resetting early keeps every hold short:
 * copy back without any lock (PASSIVE), copy again what was written
 * meanwhile (up to SETTLE_PASSES times, until little is left), then RESTART,
 * which holds the write lock for the pages still left and two fsyncs (~10-20 ms on the bench machine) and
 * waits at most RESET_WAIT_MS for readers to let go. RESTART, not TRUNCATE:
 * the file is reused at its size instead of being cut and grown again.
 */
const RESET_WAIT_MS = 3;
const SETTLE_PASSES = 3;
const SETTLED_FRAMES = 16;

export interface CheckpointResult {
  /** 1 when another connection was checkpointing at the same time. */
  readonly busy: number;
  /** Frames in the WAL since it last restarted. */
  readonly log: number;
  /** Of those, frames copied back into the database. */
  readonly checkpointed: number;
}

function copyBack(db: Db): CheckpointResult {
  return (db.pragma('wal_checkpoint(PASSIVE)') as [CheckpointResult])[0];
}

/** Whether every frame of the WAL is in the database: nothing else checkpointing, no reader on an old snapshot. */
export function fullyCopied(r: CheckpointResult): boolean {
  return r.busy === 0 && r.checkpointed >= r.log;
}

export interface CopyBackResult extends CheckpointResult {
  /** The WAL was reset: the next write starts it again from its beginning. */
  readonly reset: boolean;
}

/**
 * Copies the WAL back; once it holds `resetFrames` pages, also resets it. Returns
 * the last PASSIVE's result, and whether the reset happened. Never waits for
 * a lock except the short RESTART; a reset that readers hold up is tried
 * again at the next call.
 */
export function copyBackAndReset(db: Db, resetFrames: number): CopyBackResult {
  let passive = copyBack(db);
  if (!fullyCopied(passive) || passive.log < resetFrames) return { ...passive, reset: false };
  for (let i = 0; i < SETTLE_PASSES; i++) {
    const before = passive.log;
    passive = copyBack(db);
    if (!fullyCopied(passive) || passive.log - before <= SETTLED_FRAMES) break;
  }
  if (!fullyCopied(passive)) return { ...passive, reset: false };
  const [restart] = withBusyTimeout(db, RESET_WAIT_MS, () => db.pragma('wal_checkpoint(RESTART)') as [CheckpointResult]);
  return { ...passive, reset: restart!.busy === 0 };
}
