import { statSync } from 'node:fs';

/** Why the audit file cannot take a commit; `code` is stable, for logs, metrics and Sentry. */
export class AuditStoreError extends Error {
  constructor(readonly code: 'audit_file_missing' | 'audit_file_replaced' | 'audit_file_read_only', message: string) {
    super(message);
    this.name = 'AuditStoreError';
  }
}

/**
 * The audit file the writer holds open. SQLite keeps writing to a deleted or
 * replaced file through its open descriptor, and succeeds: every row after
 * that would be lost with no error. And a gateway running as root writes
 * through permission bits. So each commit first checks that the path still
 * names the file that was opened and that it has not been made read-only,
 * one stat() per group commit, not per row.
 */
export class StoreFile {
  private readonly dev: number;
  private readonly ino: number;

  constructor(readonly path: string) {
    const stat = statSync(path);
    this.dev = stat.dev;
    this.ino = stat.ino;
  }

  /** Throws AuditStoreError when the path no longer takes writes. */
  assertWritable(): void {
    const stat = statSync(this.path, { throwIfNoEntry: false });
    if (!stat) throw new AuditStoreError('audit_file_missing', `the audit database ${this.path} was deleted`);
    if (stat.dev !== this.dev || stat.ino !== this.ino) {
      throw new AuditStoreError('audit_file_replaced', `the audit database ${this.path} was replaced by another file`);
    }
    if ((stat.mode & 0o222) === 0) throw new AuditStoreError('audit_file_read_only', `the audit database ${this.path} was made read-only`);
  }
}
