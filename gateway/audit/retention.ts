import type Database from 'better-sqlite3';
import { CHAINS, type ChainName } from './chain.js';
import type { Db } from './database.js';
import { sqliteTime } from './database.js';

/**
 * Small batches keep each delete transaction short, and yielding to the event
 * loop between them lets requests' audit rows commit in between.
 */
const BATCH_ROWS = 500;

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
export async function pruneAuditRows(db: Db, days: number, now: Date = new Date()): Promise<{ decisions: number; outcomes: number }> {
  const cutoff = retentionCutoff(days, now);
  const anchor = db.prepare(
    `INSERT INTO audit_anchor (chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
  );
  const total = { decisions: 0, outcomes: 0 };
  for (const chain of CHAINS) {
    const batch = pruneBatch(db, chain, anchor);
    for (;;) {
      const deleted = batch(cutoff);
      total[chain === 'usagelog' ? 'decisions' : 'outcomes'] += deleted;
      if (deleted < BATCH_ROWS) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  return total;
}

function pruneBatch(db: Db, chain: ChainName, anchor: Database.Statement): (cutoff: string) => number {
  const oldest = db.prepare(`SELECT rowid AS row_id, hash, created_at FROM ${chain} ORDER BY rowid LIMIT ${BATCH_ROWS}`);
  const remove = db.prepare(`DELETE FROM ${chain} WHERE rowid <= ?`);
  return db.transaction((cutoff: string): number => {
    const rows = oldest.all() as ChainHead[];
    let expired = 0;
    while (expired < rows.length && rows[expired]!.created_at < cutoff) expired++;
    if (expired === 0) return 0;
    const last = rows[expired - 1]!;
    remove.run(last.row_id);
    // A row inserted by hand may have no hash; the anchor then records none and verification flags what follows.
    anchor.run(chain, last.row_id, last.hash ?? '', last.created_at, expired, sqliteTime());
    return expired;
  }).immediate;
}
