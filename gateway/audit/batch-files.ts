import type Database from 'better-sqlite3';
import type { AuditLog } from './audit-writer.js';
import { type Db } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';

/** Files accepted but perhaps not committed yet: the client may create its batch before the next outcome commit. */
const RECENT_LIMIT = 10_000;

/**
 * The batch input files whose every line the policy allowed, per customer: a
 * batch may run only one of these, since the provider runs its lines without
 * asking the gateway again.
 */
export class BatchInputFiles {
  private readonly recent = new Set<string>();
  private readonly lookup: Database.Statement;

  constructor(db: Db, private readonly audit: AuditLog) {
    this.lookup = db.prepare('SELECT 1 FROM batch_input_file WHERE customer_id = ? AND file_id = ?').pluck();
  }

  passed(customer: string, fileId: string): boolean {
    return this.recent.has(`${customer}\n${fileId}`) || this.lookup.get(customer, fileId) !== undefined;
  }

  accept(file: { fileId: string; customer: string; keyId: string; logId: string; lines: number }): void {
    if (this.recent.size >= RECENT_LIMIT) this.recent.delete(this.recent.values().next().value!);
    this.recent.add(`${file.customer}\n${file.fileId}`);
    this.audit.recordBatchFile({
      file_id: file.fileId, customer_id: file.customer, api_key_id: file.keyId, log_id: file.logId, lines: file.lines, created_at: sqliteTime(),
    });
  }
}
