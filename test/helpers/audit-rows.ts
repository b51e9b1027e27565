import { AuditWriter, type DecisionRow, type OutcomeRow } from '../../gateway/audit/audit-writer.js';
import { openDatabase, sqliteTime } from '../../gateway/audit/database.js';
import { StoreFile } from '../../gateway/audit/store-file.js';

/** The i-th of a run of plausible decision rows: 50 customers, 200 keys, one in seven blocked. */
export function syntheticDecision(i: number, createdAt: string): DecisionRow {
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, customer_id: `customer-${i % 50}`, api_key_id: `key_${i % 200}`, model: 'gpt-4o-mini',
    operation: 'chat.completions', meta: JSON.stringify({ metadata: { department: 'engineering' }, stream: false, max_tokens: 256, messages: 2, tools: null, body_bytes: 1024 }),
    risk_score: i % 7 === 0 ? 90 : 10, allowed: i % 7 === 0 ? 0 : 1, reason: i % 7 === 0 ? 'rule pii-to-external: risk 90' : 'allowed', created_at: createdAt,
  };
}

/** The outcome of syntheticDecision(i). */
export function syntheticOutcome(i: number, createdAt: string): OutcomeRow {
  return { log_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, status: 200, duration_ms: 12.5, upstream_ms: 11, prompt_tokens: 250, completion_tokens: 20, total_tokens: 270, error: null, created_at: createdAt };
}

/**
 * Writes `rows` hash-chained decision rows (and their outcomes), all created
 * `ageDays` ago, with the gateway's own writer, 1000 per group commit; leaves
 * the WAL empty.
 */
export async function writeAuditRows(file: string, rows: number, ageDays: number, withOutcomes: boolean): Promise<void> {
  const db = openDatabase(file, { synchronous: 'NORMAL' });
  try {
    const writer = new AuditWriter(db, new StoreFile(file), { onCommit() {}, onFailure(err) { throw err; } });
    const createdAt = sqliteTime(new Date(Date.now() - ageDays * 86_400_000));
    for (let i = 0; i < rows; i += 1000) {
      const turn: Promise<void>[] = [];
      for (let j = i; j < Math.min(i + 1000, rows); j++) {
        turn.push(writer.record(syntheticDecision(j, createdAt)));
        if (withOutcomes) writer.recordOutcome(syntheticOutcome(j, createdAt));
      }
      await Promise.all(turn);
    }
    writer.flush();
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}
