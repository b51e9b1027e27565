import { statfsSync } from 'node:fs';
import path from 'node:path';
import type { AuditWriter } from './audit-writer.js';
import { withBusyTimeout, type Db } from './database.js';
import type { StoreFile } from './store-file.js';

/**
 * Whether the audit store can take a commit now: its path still names the
 * file that was opened and it is writable, and the last commit succeeded or,
 * after a failure, a probe transaction takes the write lock. The probe runs
 * only while unhealthy, so a healthy gateway's readiness checks never touch
 * the write lock.
 */
export function auditWritable(db: Db, writer: AuditWriter, file: StoreFile): boolean {
  try {
    file.assertWritable();
  } catch {
    return false;
  }
  if (!writer.failing) return true;
  // Taking the write lock writes nothing, so after a full disk it proves nothing: free space must be back.
  if ((writer.failure as { code?: string } | null)?.code === 'SQLITE_FULL' && freeBytes(file.path) < MIN_FREE_BYTES) return false;
  // The connection never waits for a lock (app.ts); the probe may, briefly, or a checkpoint or a cleanup-logs batch would fail it.
  return withBusyTimeout(db, PROBE_WAIT_MS, () => {
    try {
      db.exec('BEGIN IMMEDIATE; ROLLBACK;');
      return true;
    } catch {
      if (db.inTransaction) db.exec('ROLLBACK');
      return false;
    }
  });
}

const PROBE_WAIT_MS = 5;

/** Room for a few group commits and a checkpoint's WAL growth. */
const MIN_FREE_BYTES = 1024 * 1024;

function freeBytes(file: string): number {
  try {
    const fs = statfsSync(path.dirname(file));
    return fs.bavail * fs.bsize;
  } catch {
    return 0;
  }
}
