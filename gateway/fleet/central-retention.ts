import { scheduleJob, type ScheduledJob, type ScheduleHooks } from '../audit/background-schedule.js';
import { PRUNED_CHAINS } from '../store/chain.js';
import type { FleetDatabase } from './fleet-database.js';

/** Any 64-bit number unlikely to be used by another application's advisory locks; not the migration's. */
const RETENTION_LOCK = 0x676f76726574n; // "govret"

export interface CentralPruneResult {
  /** False when another gateway held the lock: it is doing this run. */
  readonly ran: boolean;
  readonly decisions: number;
  readonly outcomes: number;
}

/**
 * Central retention follows the local one: each gateway prunes its own file
 * and ships the anchor that says how far, and the central rows of that
 * gateway's chain are deleted through its latest shipped anchor, so every
 * central chain still begins at an anchor and verifies. Anchors, control
 * events and policy texts are never deleted. One gateway runs it at a time
 * (the others find the lock taken and skip); one that comes after finds
 * nothing left to delete. The triggers let these DELETEs through only under
 * `govgate.retention = 'on'`, set for this transaction alone.
 */
export async function pruneCentralAudit(db: FleetDatabase): Promise<CentralPruneResult> {
  return db.transaction(async (client) => {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [RETENTION_LOCK.toString()]);
    if (!rows[0]?.locked) return { ran: false, decisions: 0, outcomes: 0 };
    await client.query("SET LOCAL govgate.retention = 'on'");
    const deleted: Record<string, number> = {};
    for (const chain of PRUNED_CHAINS) {
      const result = await client.query(
        `WITH latest AS (
           SELECT DISTINCT ON (gateway_id) gateway_id, through_rowid FROM audit_anchor WHERE chain = $1 ORDER BY gateway_id, id DESC
         )
         DELETE FROM ${chain} c USING latest WHERE c.gateway_id = latest.gateway_id AND c.row_id <= latest.through_rowid`,
        [chain],
      );
      deleted[chain] = result.rowCount ?? 0;
    }
    return { ran: true, decisions: deleted.usagelog ?? 0, outcomes: deleted.usagelog_outcome ?? 0 };
  });
}

/** Runs central retention on the gateway's own retention schedule (audit.cleanup_schedule). */
export function scheduleCentralRetention(schedule: string, db: FleetDatabase, hooks: ScheduleHooks<CentralPruneResult>): ScheduledJob {
  return scheduleJob(schedule, 'govgate-fleet-retention', () => pruneCentralAudit(db), hooks);
}
