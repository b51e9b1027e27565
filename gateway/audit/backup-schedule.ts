import { backupAuditDatabase, type BackupResult } from './backup.js';
import { scheduleJob, type ScheduledJob, type ScheduleHooks } from './background-schedule.js';

export interface BackupSettings {
  readonly path: string;
  readonly backupSchedule: string;
  readonly backupDir: string;
  readonly backupKeep: number;
}

/** Snapshots the audit database on `audit.backup_schedule`; stopping abandons a snapshot in progress (its partial file is removed). */
export function scheduleBackup(audit: BackupSettings, hooks: ScheduleHooks<BackupResult>): ScheduledJob {
  return scheduleJob(
    audit.backupSchedule,
    'govgate-audit-backup',
    (signal) => backupAuditDatabase(audit.path, audit.backupDir, audit.backupKeep, { signal }),
    hooks,
  );
}
