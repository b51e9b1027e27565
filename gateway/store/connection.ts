import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { SyncMode } from '../config/gateway-config.js';
import { installDeleteGuards, migrate } from './schema.js';

export type Db = Database.Database;

/** Runs `fn` with the connection's busy_timeout at `ms`, then puts the previous value back. */
export function withBusyTimeout<T>(db: Db, ms: number, fn: () => T): T {
  const before = db.pragma('busy_timeout', { simple: true }) as number;
  db.pragma(`busy_timeout = ${ms}`);
  try {
    return fn();
  } finally {
    db.pragma(`busy_timeout = ${before}`);
  }
}

export interface OpenOptions {
  readonly synchronous: SyncMode;
  readonly readonly?: boolean;
  /** Refuse to create the file: a connection opened after the gateway's must find the file it opened. */
  readonly mustExist?: boolean;
  /**
   * How long a statement sleeps for a lock another connection holds. The sleep
   * blocks the thread, so the gateway's connection keeps it to milliseconds and
   * waits asynchronously instead (AuditWriter); CLI commands can afford seconds.
   */
  readonly busyTimeoutMs?: number;
  /** audit.retention_days: writable opens (re)install the triggers that protect rows inside the window. */
  readonly retentionDays?: number;
  /** Set on the gateway's writer connection, whose WAL is checkpointed by `WalCheckpointer`. */
  readonly checkpointsElsewhere?: boolean;
}

export function openDatabase(file: string, options: OpenOptions): Db {
  if (!options.readonly) mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: (options.readonly ?? false) || (options.mustExist ?? false) });
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous}`);
    migrate(db);
    if (options.retentionDays !== undefined) installDeleteGuards(db, options.retentionDays);
  }
  if (options.checkpointsElsewhere) {
    // A checkpoint copies the WAL into the database and fsyncs it: milliseconds that must not
    // block the event loop, so the gateway's connection leaves them to the background checkpointer.
    db.pragma('wal_autocheckpoint = 0');
    // After a checkpoint the WAL is reused from its start; this trims the file back when that happens.
    db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
  }
  return db;
}
