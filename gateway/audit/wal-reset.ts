import { withBusyTimeout, type Db } from './database.js';

/**
 * The WAL is reused from its start only once everything in it was copied back
 * into the database before the next write, which never happens by itself
 * while writes keep coming (the gateway's commits, a prune's batches): left
 * alone it grows until a checkpoint resets it, and resetting a large WAL held
 * the write lock for a long time (40-50 ms to truncate 73 MB; seconds when a
 * prune had grown it to gigabytes). Resetting early keeps every hold short:
 * copy back without any lock (PASSIVE), copy again what was written
 * meanwhile (up to SETTLE_PASSES times, until little is left), sync the
 * database file, copy once more, then RESTART, which holds the write lock for
 * the pages still left and their fsyncs and waits at most RESET_WAIT_MS for
 * readers to let go. RESTART, not TRUNCATE: the file is reused at its size
 * instead of being cut and grown again.
 *
 * The sync before the RESTART is the one that matters: SQLite syncs the
 * database file at the end of a PASSIVE only if it copied up to the WAL's
 * current end (no commit came while it copied, no reader held it back), which
 * under load is never, so the pages every pass copied waited for
 * the RESTART's sync, under the write lock: 15-28 ms a reset during a prune on
 * the bench machine, against 1.5-4 ms for the resets whose last pass happened
 * to catch up.
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
  /** The WAL is reset (now, or by an earlier call with nothing committed since): the next write starts it again from its beginning. */
  readonly reset: boolean;
  /** While it is: the database's data_version when it was reset, for the next call. */
  readonly resetVersion?: number;
}

export interface ResetHooks {
  /** Syncs the database file: an fsync outside SQLite (see above). */
  syncDatabase(): void;
  /** A reset is under way, of `frames`: what other writers add until it is done, its RESTART copies while it holds the write lock. */
  onResetting(frames: number): void;
}

/**
 * Copies the WAL back; once it holds `resetFrames` pages, also resets it. Returns
 * the last PASSIVE's result (zeros when the WAL is still empty and none ran),
 * and whether the WAL is reset. Never waits for
 * a lock except the short RESTART; a reset that readers hold up is tried
 * again at the next call. `resetVersion`, from the last call's result: while
 * nothing was committed since that reset the WAL is still empty, though SQLite
 * goes on reporting its old frame count, and resetting it again would take the
 * write lock and sync for nothing.
 */
export function copyBackAndReset(db: Db, resetFrames: number, hooks: ResetHooks, resetVersion?: number): CopyBackResult {
  if (resetVersion !== undefined && dataVersion(db) === resetVersion) return { busy: 0, log: 0, checkpointed: 0, reset: true, resetVersion };
  let passive = copyBack(db);
  if (!fullyCopied(passive) || passive.log < resetFrames) return { ...passive, reset: false };
  hooks.onResetting(passive.log);
  for (let i = 0; i < SETTLE_PASSES; i++) {
    const before = passive.log;
    passive = copyBack(db);
    if (!fullyCopied(passive) || passive.log - before <= SETTLED_FRAMES) break;
  }
  if (!fullyCopied(passive)) return { ...passive, reset: false };
  hooks.syncDatabase();
  // What was committed during the sync; the RESTART then has only what comes after this pass.
  passive = copyBack(db);
  if (!fullyCopied(passive)) return { ...passive, reset: false };
  // Read before the RESTART: a commit in between makes the next call reset once more, never skip one.
  const version = dataVersion(db);
  const [restart] = withBusyTimeout(db, RESET_WAIT_MS, () => db.pragma('wal_checkpoint(RESTART)') as [CheckpointResult]);
  return restart!.busy === 0 ? { ...passive, reset: true, resetVersion: version } : { ...passive, reset: false };
}

/** Changes whenever another connection commits (or rewrites the WAL's header: one more reset, never one fewer). */
function dataVersion(db: Db): number {
  return db.pragma('data_version', { simple: true }) as number;
}
