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

/** Deletes audit rows (decisions and outcomes) created before `now - days`; resolves to the decisions deleted. */
export async function pruneAuditRows(db: Db, days: number, now: Date = new Date()): Promise<{ decisions: number; outcomes: number }> {
  const cutoff = retentionCutoff(days, now);
  const deleteDecisions = db.prepare(
    'DELETE FROM usagelog WHERE rowid IN (SELECT rowid FROM usagelog WHERE created_at < ? ORDER BY created_at LIMIT ?)',
  );
  const deleteOutcomes = db.prepare(
    'DELETE FROM usagelog_outcome WHERE rowid IN (SELECT rowid FROM usagelog_outcome WHERE created_at < ? ORDER BY created_at LIMIT ?)',
  );
  const total = { decisions: 0, outcomes: 0 };
  for (const [statement, field] of [[deleteDecisions, 'decisions'], [deleteOutcomes, 'outcomes']] as const) {
    for (;;) {
      const { changes } = statement.run(cutoff, BATCH_ROWS);
      total[field] += changes;
      if (changes < BATCH_ROWS) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  return total;
}
