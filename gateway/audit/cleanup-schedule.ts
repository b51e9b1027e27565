import type { SyncMode } from '../config/gateway-config.js';
import { scheduleJob, type ScheduledJob, type ScheduleHooks } from './background-schedule.js';
import { runInWorker } from './module-worker.js';
import type { PruneResult } from './retention.js';
import type { WriterPriority } from './writer-priority.js';

export interface CleanupSettings {
  readonly path: string;
  readonly synchronous: SyncMode;
  readonly cleanupSchedule: string;
  readonly retentionDays: number;
}

/**
 * Runs retention inside the gateway on `audit.cleanup_schedule`, in a worker
 * thread on its own connection (retention-worker.ts), so pruning a large
 * backlog never holds the event loop; stopping abandons a prune in progress
 * (its current batch rolls back).
 */
export function scheduleCleanup(audit: CleanupSettings, priority: WriterPriority, hooks: ScheduleHooks<PruneResult>): ScheduledJob {
  const data = { file: audit.path, days: audit.retentionDays, synchronous: audit.synchronous, writerWaiting: priority.buffer };
  return scheduleJob(audit.cleanupSchedule, 'govgate-audit-retention', (signal) => runInWorker<PruneResult>('retention-worker', data, 'retention', signal), hooks);
}
