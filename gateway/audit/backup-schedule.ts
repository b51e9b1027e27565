import cron, { type ScheduledTask } from 'node-cron';
import { backupAuditDatabase, type BackupResult } from './backup.js';

export interface BackupHooks {
  onDone(result: BackupResult): void;
  onError(err: unknown): void;
}

export interface BackupSettings {
  readonly path: string;
  readonly backupSchedule: string;
  readonly backupDir: string;
  readonly backupKeep: number;
}

export interface ScheduledBackup {
  /** Stops the schedule and abandons a snapshot in progress (its partial file is removed). */
  stop(): Promise<void>;
}

/** Snapshots the audit database on a node-cron schedule, evaluated in UTC; never keeps the process alive. */
export function scheduleBackup(audit: BackupSettings, hooks: BackupHooks): ScheduledBackup {
  const stopping = new AbortController();
  let running: Promise<void> | null = null;
  const run = async () => {
    try {
      hooks.onDone(await backupAuditDatabase(audit.path, audit.backupDir, audit.backupKeep, { signal: stopping.signal }));
    } catch (err) {
      if (!stopping.signal.aborted) hooks.onError(err);
    }
  };
  const task: ScheduledTask = cron.schedule(
    audit.backupSchedule,
    async () => {
      running = run();
      await running;
      running = null;
    },
    { timezone: 'UTC', name: 'govgate-audit-backup', noOverlap: true },
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
