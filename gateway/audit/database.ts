import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { SyncMode } from '../config/gateway-config.js';

export type Db = Database.Database;

/**
 * The schema, one migration per entry, applied in order and tracked with
 * `PRAGMA user_version`. `usagelog` has exactly the contract's columns; what
 * happened after forwarding goes in `usagelog_outcome`, so decision rows are
 * never updated. API keys live in the same file so one backup holds everything.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE usagelog (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    model       TEXT,
    operation   TEXT NOT NULL,
    meta        TEXT NOT NULL,
    risk_score  REAL NOT NULL,
    allowed     INTEGER NOT NULL CHECK (allowed IN (0, 1)),
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
  );
  CREATE INDEX usagelog_customer_id ON usagelog (customer_id);
  CREATE INDEX usagelog_created_at ON usagelog (created_at);
  CREATE INDEX usagelog_api_key_id ON usagelog (api_key_id);

  CREATE TABLE usagelog_outcome (
    log_id            TEXT PRIMARY KEY,
    status            INTEGER,
    duration_ms       REAL NOT NULL,
    upstream_ms       REAL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    total_tokens      INTEGER,
    error             TEXT,
    created_at        TEXT NOT NULL
  );
  CREATE INDEX usagelog_outcome_created_at ON usagelog_outcome (created_at);

  CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    name        TEXT,
    prefix      TEXT NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
  );
  CREATE INDEX api_keys_customer_id ON api_keys (customer_id);
  `,
  // The admin dashboard's aggregates read only these indexes, one hour of rows at a time, never the table:
  // counts, risk histogram and the customer × model table from the first, blocking reasons (blocked rows only) from the second.
  `
  CREATE INDEX usagelog_created_at_summary ON usagelog (created_at, allowed, risk_score, customer_id, model);
  CREATE INDEX usagelog_blocked_reason ON usagelog (created_at, reason, customer_id, model, operation) WHERE allowed = 0;
  `,
];

export interface OpenOptions {
  readonly synchronous: SyncMode;
  readonly readonly?: boolean;
  /** Set on the gateway's writer connection, whose WAL is checkpointed by `WalCheckpointer`. */
  readonly checkpointsElsewhere?: boolean;
}

export function openDatabase(file: string, options: OpenOptions): Db {
  if (!options.readonly) mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  // A short busy wait only: the writer runs on the event loop, so a long one would stall every request.
  db.pragma('busy_timeout = 100');
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous}`);
    migrate(db);
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

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current === MIGRATIONS.length) return;
  if (current > MIGRATIONS.length) {
    throw new Error(`the audit database has schema version ${current}, newer than this govgate understands (${MIGRATIONS.length})`);
  }
  db.transaction(() => {
    for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

/** UTC in SQLite's own `YYYY-MM-DD HH:MM:SS.SSS`, so `datetime('now', …)` comparisons work on the text. */
export function sqliteTime(date: Date = new Date()): string {
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}
