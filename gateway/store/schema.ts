import { GENESIS_HASH, PRUNED_CHAINS, rowHash } from './chain.js';
import type { Db } from './connection.js';

type Migration = string | ((db: Db) => void);

/**
 * The API keys table and its index, here and in the fleet's PostgreSQL
 * (fleet/central-schema.ts), which differ only in how times are stored.
 */
export function apiKeysTable(createdAt: string, revokedAt: string): string {
  return `CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    name        TEXT,
    prefix      TEXT NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    created_at  ${createdAt},
    revoked_at  ${revokedAt}
  );
  CREATE INDEX api_keys_customer_id ON api_keys (customer_id);`;
}

/** Triggers that refuse every UPDATE and DELETE on `table`; `what` names its rows in the error. */
function appendOnly(table: string, what: string): string {
  return ['update', 'delete'].map((op) => `CREATE TRIGGER ${table}_no_${op} BEFORE ${op.toUpperCase()} ON ${table}
    BEGIN SELECT RAISE(ABORT, 'govgate: ${table} is append-only; ${what} cannot be ${op}d'); END;`).join('\n  ');
}

/**
 * The schema, one migration per entry, applied in order and tracked with
 * `PRAGMA user_version`. `usagelog` has exactly the contract's columns; what
 * happened after forwarding goes in `usagelog_outcome`, so decision rows are
 * never updated. API keys live in the same file so one backup holds everything.
 */
const MIGRATIONS: readonly Migration[] = [
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

  ${apiKeysTable('TEXT NOT NULL', 'TEXT')}
  `,
  // The hash chain (docs/audit.md, "Audit integrity"): the columns come after the contract's, and
  // retention records the last row it deleted in `audit_anchor` so what remains still verifies.
  `
  ALTER TABLE usagelog ADD COLUMN prev_hash TEXT;
  ALTER TABLE usagelog ADD COLUMN hash TEXT;
  ALTER TABLE usagelog_outcome ADD COLUMN prev_hash TEXT;
  ALTER TABLE usagelog_outcome ADD COLUMN hash TEXT;
  CREATE TABLE audit_anchor (
    id                 INTEGER PRIMARY KEY,
    chain              TEXT NOT NULL CHECK (chain IN ('usagelog', 'usagelog_outcome')),
    through_rowid      INTEGER NOT NULL,
    through_hash       TEXT NOT NULL,
    through_created_at TEXT NOT NULL,
    rows_deleted       INTEGER NOT NULL,
    created_at         TEXT NOT NULL
  );
  `,
  backfillChains,
  `
  CREATE TRIGGER usagelog_no_update BEFORE UPDATE ON usagelog
    BEGIN SELECT RAISE(ABORT, 'govgate: usagelog is append-only; audit rows cannot be updated'); END;
  CREATE TRIGGER usagelog_outcome_no_update BEFORE UPDATE ON usagelog_outcome
    BEGIN SELECT RAISE(ABORT, 'govgate: usagelog_outcome is append-only; audit rows cannot be updated'); END;
  ${appendOnly('audit_anchor', 'anchors')}
  `,
  // The admin dashboard's aggregates read only these indexes, one hour of rows at a time, never the table:
  // counts, risk histogram and the customer × model table from the first, blocking reasons (blocked rows only) from the second.
  `
  CREATE INDEX usagelog_created_at_summary ON usagelog (created_at, allowed, risk_score, customer_id, model);
  CREATE INDEX usagelog_blocked_reason ON usagelog (created_at, reason, customer_id, model, operation) WHERE allowed = 0;
  `,
  // Batch input files that passed the line-by-line check; a batch may only run one of these.
  `
  CREATE TABLE batch_input_file (
    file_id     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    log_id      TEXT NOT NULL,
    lines       INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (customer_id, file_id)
  );
  `,
  // Provenance (docs/audit.md): each decision names the policy text that made it and why it refused, structured;
  // every policy text ever in force is kept; changes to governance go to the hash-chained control log.
  // Neither new table is ever pruned, so both are append-only without exception.
  `
  ALTER TABLE usagelog ADD COLUMN policy_hash TEXT;
  ALTER TABLE usagelog ADD COLUMN causes TEXT;
  CREATE TABLE policy_version (
    hash      TEXT PRIMARY KEY,
    loaded_at TEXT NOT NULL,
    path      TEXT NOT NULL,
    text      TEXT NOT NULL
  );
  ${appendOnly('policy_version', 'policy texts')}
  CREATE TABLE audit_event (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
  );
  CREATE INDEX audit_event_created_at ON audit_event (created_at);
  ${appendOnly('audit_event', 'control events')}
  DROP INDEX usagelog_blocked_reason;
  CREATE INDEX usagelog_blocked_cause ON usagelog (created_at, causes) WHERE allowed = 0;
  `,
  // Fleet mode (gateway/fleet/shipper.ts): `fleet_file` names this file to the fleet, so a second file
  // under the same gateway id is refused instead of forking that id's central chains; `fleet_shipped` is
  // how far each table has reached PostgreSQL, so retention, `cleanup-logs` too, keeps what is not there yet.
  `
  CREATE TABLE fleet_file (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    file_id   TEXT NOT NULL
  );
  INSERT INTO fleet_file (singleton, file_id) VALUES (1, lower(hex(randomblob(16))));
  CREATE TRIGGER fleet_file_no_update BEFORE UPDATE ON fleet_file
    BEGIN SELECT RAISE(ABORT, 'govgate: fleet_file names this file for good; it cannot be updated'); END;
  CREATE TRIGGER fleet_file_no_delete BEFORE DELETE ON fleet_file
    BEGIN SELECT RAISE(ABORT, 'govgate: fleet_file names this file for good; it cannot be deleted'); END;
  CREATE TABLE fleet_shipped (
    table_name     TEXT PRIMARY KEY,
    through_row_id INTEGER NOT NULL
  );
  `,
  // usagelog_created_at repeats the leading column of usagelog_created_at_summary, which serves every
  // query it served (test/bench/RESULTS.md, "What each index buys"): 36 bytes a request for nothing.
  // The customer_id and api_key_id indexes stay: the contract promises them to auditors' own queries.
  `
  DROP INDEX usagelog_created_at;
  `,
];

/** Databases from before the chain get one: their rows are hashed in rowid order, as if written so. */
function backfillChains(db: Db): void {
  for (const chain of PRUNED_CHAINS) {
    const update = db.prepare(`UPDATE ${chain} SET prev_hash = ?, hash = ? WHERE rowid = ?`);
    let prev = GENESIS_HASH;
    for (const row of db.prepare(`SELECT rowid AS row_id, * FROM ${chain} ORDER BY rowid`).all() as Record<string, unknown>[]) {
      const hash = rowHash(chain, prev, row);
      update.run(prev, hash, row.row_id);
      prev = hash;
    }
  }
}

/**
 * Rows inside the retention window cannot be deleted, even by an admin's
 * `sqlite3` session. The window is configuration, so the triggers are
 * rewritten on every writable open with the configured number of days.
 * SQLite's own clock decides, in the same text format as `created_at`.
 */
export function installDeleteGuards(db: Db, retentionDays: number): void {
  const wanted = PRUNED_CHAINS.map((chain) => ({
    name: `${chain}_no_early_delete`,
    sql: `CREATE TRIGGER ${chain}_no_early_delete BEFORE DELETE ON ${chain}
      WHEN OLD.created_at >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-${retentionDays} days')
      BEGIN SELECT RAISE(ABORT, 'govgate: ${chain} rows inside the ${retentionDays}-day retention window cannot be deleted'); END`,
  }));
  const current = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?").pluck();
  // Unchanged triggers are left alone, so opening the file never needs the write lock a busy gateway holds.
  const stale = wanted.filter((t) => current.get(t.name) !== t.sql);
  if (stale.length === 0) return;
  db.transaction(() => {
    for (const t of stale) db.exec(`DROP TRIGGER IF EXISTS ${t.name}; ${t.sql};`);
  }).immediate();
}

/** Brings the file to this version's schema; refuses a file from a newer version. */
export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current === MIGRATIONS.length) return;
  if (current > MIGRATIONS.length) {
    throw new Error(`the audit database has schema version ${current}, newer than this govgate understands (${MIGRATIONS.length})`);
  }
  db.transaction(() => {
    // Another process may have migrated while this one waited for the lock.
    const now = db.pragma('user_version', { simple: true }) as number;
    for (let v = now; v < MIGRATIONS.length; v++) {
      const migration = MIGRATIONS[v]!;
      if (typeof migration === 'string') db.exec(migration);
      else migration(db);
    }
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}
