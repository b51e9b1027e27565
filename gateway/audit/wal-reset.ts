import { withBusyTimeout, type Db } from '../store/connection.js';

/**
 * Under steady writes the WAL is never all copied back before the next write,
 * so it is never reused from its start by itself, and the larger it grows the
 * longer a reset holds the write lock. Resetting early keeps every hold short:
 * lock-free PASSIVE copies until little is left, then RESTART (not TRUNCATE:
 * the file is reused at its size) holds the lock for the last pages only.
 *
 * The database file is synced before the RESTART, outside the lock: SQLite
 * syncs it after a PASSIVE only when the copy caught up with the WAL's end
 * (under load, never), so the RESTART would otherwise sync every page the
 * passes copied, under the write lock. Figures: docs/design/audit-writer.md,
 * "Resetting the WAL early".
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
  /** A reset is due: the caller's own reader on the WAL (the checkpointer's pin, wal-pin.ts) must let the copies reach its end. */
  unpin(): void;
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
  if (passive.log < resetFrames) return { ...passive, reset: false };
  hooks.unpin();
  // What the pin held back; a reader of an old snapshot holds the reset off until a later call.
  if (!fullyCopied(passive)) passive = copyBack(db);
  if (!fullyCopied(passive)) return { ...passive, reset: false };
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
export function dataVersion(db: Db): number {
  return db.pragma('data_version', { simple: true }) as number;
}
