import { scheduleJob, type ScheduledJob, type ScheduleHooks } from './background-schedule.js';
import type { Db } from '../store/connection.js';
import { pruneAuditRows, type PruneOptions, type PruneResult } from './retention.js';

export interface CleanupSettings {
  readonly cleanupSchedule: string;
  readonly retentionDays: number;
}

/** What the prune needs of the gateway's audit writer: whether requests are waiting for their rows. */
export interface PendingDecisions {
  readonly decisionsPending: boolean;
}

/** What it needs of the checkpointer: whether the WAL holds a reset's worth (or a reset is under way), or is near its limit. */
export interface WalProgress {
  readonly behind: boolean;
  readonly nearLimit: boolean;
}

export interface CleanupHooks extends ScheduleHooks<PruneResult> {
  onBatch(ms: number): void;
  /** The prune has been paused for a minute: readers keep the WAL near its limit. */
  onLongPause(): void;
}

/**
 * Runs retention inside the gateway on `audit.cleanup_schedule`, on the
 * event loop's connection, in batches of about a millisecond, holding off (up
 * to 50 ms a batch) while decisions wait for their commit. When the writer is
 * on the event loop this is its own connection, and a request waits for the
 * prune at most one batch (docs/design/audit-writer.md, "Retention on the
 * writer's connection"); when it has its own thread, the two take turns for
 * SQLite's write lock ("The writer's thread").
 *
 * A prune writes the WAL faster than the gateway does: while the WAL holds
 * what the checkpointer resets it at, or a reset is under way, the prune
 * holds off, and while it is near its limit (readers keep it from being
 * reset, or the writes outrun the resets) the prune pauses for as long as
 * that lasts, so that the prune does not itself take the WAL to the limit,
 * whose escalation holds the write lock while it waits for readers
 * (docs/design/audit-writer.md, "Near the limit"). Stopping ends the prune
 * between two batches. In fleet mode `fleet.shippedThrough` keeps the rows
 * not shipped yet.
 */
export function scheduleCleanup(
  audit: CleanupSettings,
  db: Db,
  writer: PendingDecisions,
  wal: WalProgress,
  hooks: CleanupHooks,
  fleet: Pick<PruneOptions, 'shippedThrough'> = {},
): ScheduledJob {
  const holdOff = () => writer.decisionsPending || wal.behind;
  const pauseWhile = () => wal.nearLimit;
  const prune = (signal: AbortSignal) =>
    pruneAuditRows(db, audit.retentionDays, { signal, holdOff, pauseWhile, onLongPause: hooks.onLongPause, onBatch: hooks.onBatch, shippedThrough: fleet.shippedThrough });
  return scheduleJob(audit.cleanupSchedule, 'govgate-audit-retention', prune, hooks);
}
