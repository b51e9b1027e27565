import cron, { type ScheduledTask } from 'node-cron';
import type { Db } from './database.js';
import { pruneAuditRows } from './retention.js';

export interface CleanupHooks {
  onDone(result: { decisions: number; outcomes: number }): void;
  onError(err: unknown): void;
}

/** Runs retention inside the gateway on a node-cron schedule, evaluated in UTC; never keeps the process alive. */
export function scheduleCleanup(db: Db, schedule: string, retentionDays: number, hooks: CleanupHooks): ScheduledTask {
  const task = cron.schedule(
    schedule,
    async () => {
      try {
        hooks.onDone(await pruneAuditRows(db, retentionDays));
      } catch (err) {
        hooks.onError(err);
      }
    },
    { timezone: 'UTC', name: 'govgate-audit-retention', noOverlap: true },
  );
  task.unref();
  return task;
}
