import { createHash } from 'node:crypto';
import { AuditWriter, type DecisionRow, type OutcomeRow } from '../../gateway/audit/audit-writer.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { StoreFile } from '../../gateway/store/store-file.js';

/**
 * A UUID v7 for the i-th row, the same on every run: time-ordered like the
 * gateway's own ids (one millisecond apart), so inserting and pruning cost
 * what they cost in a real trail.
 */
function syntheticId(i: number): string {
  const t = (1_700_000_000_000 + i).toString(16).padStart(12, '0');
  const h = createHash('sha256').update(String(i)).digest('hex');
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${h.slice(13, 16)}-${'89ab'[Number.parseInt(h[16]!, 16) & 3]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The policy version synthetic rows name; no policy_version row holds it, which only `audit explain` would notice. */
export const SYNTHETIC_POLICY_HASH = 'a'.repeat(64);

/** The i-th of a run of plausible decision rows: 50 customers, 200 keys, one in seven blocked. */
export function syntheticDecision(i: number, createdAt: string): DecisionRow {
  return {
    id: syntheticId(i), customer_id: `customer-${i % 50}`, api_key_id: `key_${i % 200}`, model: 'gpt-4o-mini',
    operation: 'chat.completions', meta: JSON.stringify({ metadata: { department: 'engineering' }, stream: false, max_tokens: 256, messages: 2, tools: null, body_bytes: 1024 }),
    risk_score: i % 7 === 0 ? 90 : 10, allowed: i % 7 === 0 ? 0 : 1, reason: i % 7 === 0 ? 'rule pii-to-external: risk 90' : 'allowed', created_at: createdAt,
    policy_hash: SYNTHETIC_POLICY_HASH, causes: i % 7 === 0 ? '[{"kind":"rule","rule":"pii-to-external"}]' : '[]',
  };
}

/** The outcome of syntheticDecision(i). */
export function syntheticOutcome(i: number, createdAt: string): OutcomeRow {
  return { log_id: syntheticId(i), status: 200, duration_ms: 12.5, upstream_ms: 11, prompt_tokens: 250, completion_tokens: 20, total_tokens: 270, error: null, created_at: createdAt };
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
