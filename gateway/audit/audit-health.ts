import type { AuditWriter } from './audit-writer.js';
import type { Db } from './database.js';
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
  try {
    db.exec('BEGIN IMMEDIATE; ROLLBACK;');
    return true;
  } catch {
    if (db.inTransaction) db.exec('ROLLBACK');
    return false;
  }
}
