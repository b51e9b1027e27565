import { accessSync, constants } from 'node:fs';
import type { AuditWriter } from './audit-writer.js';
import type { Db } from './database.js';

/**
 * Whether the audit store can take a commit now: its file is still there and
 * writable, and the last commit succeeded or, after a failure, a probe
 * transaction takes the write lock. The probe runs only while unhealthy, so a
 * healthy gateway's readiness checks never touch the write lock.
 */
export function auditWritable(db: Db, writer: AuditWriter, file: string): boolean {
  try {
    accessSync(file, constants.W_OK);
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
