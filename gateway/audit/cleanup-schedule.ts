import cron from 'node-cron';
import type { SyncMode } from '../config/gateway-config.js';
import { runInWorker } from './module-worker.js';
import type { PruneResult } from './retention.js';

export interface CleanupHooks {
  onDone(result: PruneResult): void;
  onError(err: unknown): void;
}

export interface CleanupSettings {
  readonly path: string;
  readonly synchronous: SyncMode;
  readonly cleanupSchedule: string;
  readonly retentionDays: number;
}

export interface ScheduledCleanup {
  /** Stops the schedule and abandons a prune in progress (its current batch rolls back). */
  stop(): Promise<void>;
}

/**
 * Runs retention inside the gateway on a node-cron schedule, evaluated in
 * UTC, in a worker thread on its own connection (retention-worker.ts), so
 * pruning a large backlog never holds the event loop; never keeps the
 * process alive.
 */
export function scheduleCleanup(audit: CleanupSettings, hooks: CleanupHooks): ScheduledCleanup {
  const stopping = new AbortController();
  let running: Promise<void> | null = null;
  const run = async () => {
    try {
      const data = { file: audit.path, days: audit.retentionDays, synchronous: audit.synchronous };
      hooks.onDone(await runInWorker<PruneResult>('retention-worker', data, 'retention', stopping.signal));
    } catch (err) {
      if (!stopping.signal.aborted) hooks.onError(err);
    }
  };
  const task = cron.schedule(
    audit.cleanupSchedule,
    async () => {
      running = run();
      await running;
      running = null;
    },
    { timezone: 'UTC', name: 'govgate-audit-retention', noOverlap: true },
  );
  task.unref();
  return {
    async stop() {
      await task.destroy();
      stopping.abort();
      await running;
    },
  };
}
