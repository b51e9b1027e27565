import type Database from 'better-sqlite3';
import { CHAINS, type ChainName } from './chain.js';
import type { Db } from './database.js';
import { sqliteTime } from './database.js';
import { yieldToWriter } from './writer-priority.js';

/**
 * Each batch holds the write lock the gateway's commits wait for (the
 * gateway prunes in a worker thread, cleanup-logs in its own process), so
 * its size adapts to hold it about TARGET_BATCH_MS: deleting a row touches a
 * random leaf of every index (ids are random UUIDs), and what that costs
 * depends on the disk, the cache and the other load.
 */
const TARGET_BATCH_MS = 2;
const MIN_BATCH_ROWS = 8;
const MAX_BATCH_ROWS = 1000;
const BUSY_RETRY_MS = 50;
/** Longer than a waiting writer needs (its retry comes every 2 ms), short enough that a stuck one does not stall the prune. */
export const MAX_YIELD_MS = 50;
const BUSY_GIVE_UP_MS = 60_000;

export function retentionCutoff(days: number, now: Date = new Date()): string {
  return sqliteTime(new Date(now.getTime() - days * 86_400_000));
}

interface ChainHead {
  readonly row_id: number;
  readonly hash: string | null;
  readonly created_at: string;
}

/**
 * Deletes audit rows (decisions and outcomes) created before `now - days`;
 * resolves to the rows deleted. Each chain loses only a prefix, in rowid
 * order, and stops at its first row inside the window: deleting from the
 * middle would break the chain. Each batch appends, in the same transaction,
 * an anchor holding the hash of the last row it deleted, which is what the
 * first remaining row's `prev_hash` links to.
 */
export interface PruneResult {
  readonly decisions: number;
  readonly outcomes: number;
}

export interface PruneOptions {
  readonly now?: Date;
  /** Shared with the gateway's audit writer (WriterPriority): each batch lets a waiting writer commit first. */
  readonly writerWaiting?: SharedArrayBuffer;
}

export async function pruneAuditRows(db: Db, days: number, options: PruneOptions = {}): Promise<PruneResult> {
  const { now = new Date(), writerWaiting } = options;
  const cutoff = retentionCutoff(days, now);
  const anchor = db.prepare(
    `INSERT INTO audit_anchor (chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
  );
  const total = { decisions: 0, outcomes: 0 };
  let size = 64;
  for (const chain of CHAINS) {
    const batch = pruneBatch(db, chain, anchor);
    let busySince: number | null = null;
    for (;;) {
      if (writerWaiting) yieldToWriter(writerWaiting, MAX_YIELD_MS);
      const started = performance.now();
      let deleted: number;
      let ms: number;
      try {
        let locked: number;
        ({ deleted, locked } = batch(cutoff, size));
        // From taking the lock to the end of COMMIT, which writes the batch's pages to the WAL: most of the cost.
        ms = performance.now() - locked;
        busySince = null;
      } catch (err) {
        // Another connection holds the write lock (an escalated checkpoint, a CLI): wait without blocking, then give up.
        if (!(err as { code?: string }).code?.startsWith('SQLITE_BUSY')) throw err;
        busySince ??= started;
        if (started - busySince > BUSY_GIVE_UP_MS) throw err;
        await new Promise<void>((resolve) => setTimeout(resolve, BUSY_RETRY_MS));
        continue;
      }
      total[chain === 'usagelog' ? 'decisions' : 'outcomes'] += deleted;
      if (deleted < size) break;
      if (ms > TARGET_BATCH_MS) size = Math.max(MIN_BATCH_ROWS, Math.floor(size / 2));
      else if (ms < TARGET_BATCH_MS / 2) size = Math.min(MAX_BATCH_ROWS, size * 2);
      // Rest as long as the batch held the lock: a prune that never rests takes a whole core from the
      // requests on a small machine (bench, 2 cores: 1.1k → 1.7k req/s and p50 6.5 → 4.1 ms during a
      // prune, which took 61 s instead of 51 s).
      await new Promise<void>((resolve) => setTimeout(resolve, ms));
    }
  }
  return total;
}

/** A batch reports when it took the write lock: waiting for the lock must not shrink the batches. */
function pruneBatch(db: Db, chain: ChainName, anchor: Database.Statement): (cutoff: string, size: number) => { deleted: number; locked: number } {
  const oldest = db.prepare(`SELECT rowid AS row_id, hash, created_at FROM ${chain} ORDER BY rowid LIMIT ?`);
  const remove = db.prepare(`DELETE FROM ${chain} WHERE rowid <= ?`);
  return db.transaction((cutoff: string, size: number): { deleted: number; locked: number } => {
    const locked = performance.now();
    const rows = oldest.all(size) as ChainHead[];
    let expired = 0;
    while (expired < rows.length && rows[expired]!.created_at < cutoff) expired++;
    if (expired === 0) return { deleted: 0, locked };
    const last = rows[expired - 1]!;
    remove.run(last.row_id);
    // A row inserted by hand may have no hash; the anchor then records none and verification flags what follows.
    anchor.run(chain, last.row_id, last.hash ?? '', last.created_at, expired, sqliteTime());
    return { deleted: expired, locked };
  }).immediate;
}
