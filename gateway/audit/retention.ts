import type Database from 'better-sqlite3';
import { setTimeout as sleep } from 'node:timers/promises';
import { PRUNED_CHAINS, type PrunedChain } from '../store/chain.js';
import type { Db } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';

/**
 * Each batch runs in one transaction that holds the write lock, and in the
 * gateway it also holds the event loop (it runs on the audit writer's own
 * connection, between its commits), so its size adapts to take about
 * TARGET_BATCH_MS: deleting a row touches a leaf of every index, and what
 * that costs depends on the disk, the cache and the other load.
 */
const TARGET_BATCH_MS = 1;
const MIN_BATCH_ROWS = 8;
const MAX_BATCH_ROWS = 1000;
const BUSY_RETRY_MS = 50;
const BUSY_GIVE_UP_MS = 60_000;
/** How long a batch holds off for the gateway; bounded, so steady traffic cannot stall a prune for good. */
export const MAX_HOLD_OFF_MS = 50;
const HOLD_OFF_POLL_MS = 1;
/** A pause may last minutes (a reader pinning the WAL): checked less often than a hold-off. */
const PAUSE_POLL_MS = 10;
/** A pause this long is reported, once a prune: expired rows are being kept, and only the admin can end it. */
const LONG_PAUSE_MS = 60_000;
/**
 * After each batch the prune rests this many times as long as the batch took,
 * so it takes at most a third of the event loop from the requests
 * (docs/design/audit-writer.md, "Retention's pace").
 */
const REST_FACTOR = 2;

export function retentionCutoff(days: number, now: Date = new Date()): string {
  return sqliteTime(new Date(now.getTime() - days * 86_400_000));
}

interface ChainHead {
  readonly row_id: number;
  readonly hash: string | null;
  readonly created_at: string;
}

export interface PruneResult {
  readonly decisions: number;
  readonly outcomes: number;
}

export interface PruneOptions {
  readonly now?: Date;
  /** Stops between batches; a stopped prune resolves with what it deleted so far. */
  readonly signal?: AbortSignal;
  /**
   * True while the gateway needs the prune to wait (decisions waiting for
   * their commit, a WAL the checkpointer has not caught up with): no batch
   * starts until it is false, or MAX_HOLD_OFF_MS has passed.
   */
  readonly holdOff?: () => boolean;
  /**
   * True while any batch would do harm, however long the prune waits (a WAL
   * near its limit, where the checkpointer's escalation holds the write lock
   * while it waits for readers): no batch starts until it is false, or the
   * prune is stopped. Expired rows can wait; requests cannot.
   */
  readonly pauseWhile?: () => boolean;
  /** A pause lasted LONG_PAUSE_MS; called at most once a prune. */
  readonly onLongPause?: () => void;
  /** Each batch's time from taking the write lock to the end of its commit. */
  readonly onBatch?: (ms: number) => void;
  /**
   * Fleet mode: the last rowid of the chain that has reached the fleet's
   * PostgreSQL (fleet/local-watermark.ts). Rows after it are kept whatever
   * their age, or they would be lost to the central trail; read before each batch.
   */
  readonly shippedThrough?: (chain: PrunedChain) => number;
}

/**
 * Deletes audit rows (decisions and outcomes) created before `now - days`;
 * resolves to the rows deleted. Each chain loses only a prefix, in rowid
 * order, and stops at its first row inside the window: deleting from the
 * middle would break the chain. Each batch appends, in the same transaction,
 * an anchor holding the hash of the last row it deleted, which is what the
 * first remaining row's `prev_hash` links to.
 */
export async function pruneAuditRows(db: Db, days: number, options: PruneOptions = {}): Promise<PruneResult> {
  const { now = new Date(), signal, onBatch } = options;
  const cutoff = retentionCutoff(days, now);
  const anchor = db.prepare(
    `INSERT INTO audit_anchor (chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
  );
  const total = { decisions: 0, outcomes: 0 };
  const waitForTurn = turnWaiter(options);
  // Grown from the smallest: the first batch meets a cold cache, and it must not be the one that holds the loop for long.
  let size = MIN_BATCH_ROWS;
  for (const chain of PRUNED_CHAINS) {
    const batch = pruneBatch(db, chain, anchor, options.shippedThrough);
    let busySince: number | null = null;
    while (!signal?.aborted) {
      await waitForTurn(signal);
      if (signal?.aborted) break;
      const started = performance.now();
      let deleted: number;
      let ms: number;
      try {
        let locked: number;
        ({ deleted, locked } = batch(cutoff, size));
        // From taking the lock to the end of COMMIT, which writes the batch's pages to the WAL: most of the cost.
        ms = performance.now() - locked;
        busySince = null;
        onBatch?.(ms);
      } catch (err) {
        // Another connection holds the write lock (a checkpoint, a CLI): wait without blocking, then give up.
        if (!(err as { code?: string }).code?.startsWith('SQLITE_BUSY')) throw err;
        busySince ??= started;
        if (started - busySince > BUSY_GIVE_UP_MS) throw err;
        await rest(BUSY_RETRY_MS, signal);
        continue;
      }
      total[chain === 'usagelog' ? 'decisions' : 'outcomes'] += deleted;
      if (deleted < size) break;
      if (ms > TARGET_BATCH_MS) size = Math.max(MIN_BATCH_ROWS, Math.floor(size / 2));
      else if (ms < TARGET_BATCH_MS / 2) size = Math.min(MAX_BATCH_ROWS, size * 2);
      await rest(ms * REST_FACTOR, signal);
    }
  }
  return total;
}

/** Before each batch: waits out the gateway's hold-off (bounded) and pause (not); reports one long pause a prune. */
function turnWaiter({ holdOff, pauseWhile, onLongPause }: PruneOptions): (signal: AbortSignal | undefined) => Promise<void> {
  let longPauseReported = false;
  return async (signal) => {
    let until = performance.now() + MAX_HOLD_OFF_MS;
    let pausedSince: number | undefined;
    while (!signal?.aborted) {
      if (pauseWhile?.()) {
        pausedSince ??= performance.now();
        if (!longPauseReported && performance.now() - pausedSince >= LONG_PAUSE_MS) {
          longPauseReported = true;
          onLongPause?.();
        }
        await rest(PAUSE_POLL_MS, signal);
        // A hold-off spent during a pause would let the next batch run into pending decisions.
        until = performance.now() + MAX_HOLD_OFF_MS;
      } else if (holdOff?.() && performance.now() < until) {
        await rest(HOLD_OFF_POLL_MS, signal);
      } else {
        return;
      }
    }
  };
}

/** A rest that a stop cuts short: the caller sees the signal and returns what it deleted. */
async function rest(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (err) {
    if (!signal?.aborted) throw err;
  }
}

/** A batch reports when it took the write lock: a connection that waits for the lock (the CLI's) must not shrink its batches for it. */
function pruneBatch(
  db: Db,
  chain: PrunedChain,
  anchor: Database.Statement,
  shippedThrough: ((chain: PrunedChain) => number) | undefined,
): (cutoff: string, size: number) => { deleted: number; locked: number } {
  const oldest = db.prepare(`SELECT rowid AS row_id, hash, created_at FROM ${chain} ORDER BY rowid LIMIT ?`);
  const remove = db.prepare(`DELETE FROM ${chain} WHERE rowid <= ?`);
  return db.transaction((cutoff: string, size: number): { deleted: number; locked: number } => {
    const locked = performance.now();
    const rows = oldest.all(size) as ChainHead[];
    const keepAfter = shippedThrough?.(chain) ?? Infinity;
    let expired = 0;
    while (expired < rows.length && rows[expired]!.created_at < cutoff && rows[expired]!.row_id <= keepAfter) expired++;
    if (expired === 0) return { deleted: 0, locked };
    const last = rows[expired - 1]!;
    remove.run(last.row_id);
    // A row inserted by hand may have no hash; the anchor then records none and verification flags what follows.
    anchor.run(chain, last.row_id, last.hash ?? '', last.created_at, expired, sqliteTime());
    return { deleted: expired, locked };
  }).immediate;
}

/** The latest anchor of each pruned chain: what a `retention.ran` control event names, so the event and the anchors vouch for each other. */
export function latestAnchors(db: Db): { chain: PrunedChain; through_rowid: number; through_hash: string }[] {
  const latest = db.prepare('SELECT chain, through_rowid, through_hash FROM audit_anchor WHERE chain = ? ORDER BY id DESC LIMIT 1');
  return PRUNED_CHAINS.flatMap((chain) => {
    const row = latest.get(chain) as { chain: PrunedChain; through_rowid: number; through_hash: string } | undefined;
    return row ? [row] : [];
  });
}
