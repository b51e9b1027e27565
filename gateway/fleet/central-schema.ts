import { apiKeysTable } from '../store/schema.js';
import type { FleetDatabase } from './fleet-database.js';
import { CENTRAL_AUDIT_MIGRATION } from './central-audit-schema.js';

/** The channel every gateway LISTENs on; a notification carries a key id only, never a digest or a secret. */
export const KEYS_CHANNEL = 'govgate_keys';

/**
 * The central schema, one step per entry, applied in order; step N is schema
 * version N + 1, recorded in `govgate_schema`. Append new steps, never edit
 * one that has shipped: a fleet's gateways may run different releases during
 * an upgrade, and each must find exactly the tables it expects.
 */
export const CENTRAL_MIGRATIONS: readonly string[] = [
  // api_keys is the local table (gateway/store/schema.ts) with times as timestamps.
  // govgate_key_version is bumped in the same transaction as every key change, so a gateway that
  // missed a NOTIFY (LISTEN connection down) sees the change on its next cheap poll of one row.
  `
  ${apiKeysTable('TIMESTAMPTZ NOT NULL DEFAULT now()', 'TIMESTAMPTZ')}

  CREATE TABLE govgate_key_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version   BIGINT NOT NULL
  );
  INSERT INTO govgate_key_version (singleton, version) VALUES (true, 0);

  CREATE FUNCTION govgate_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    UPDATE govgate_key_version SET version = version + 1;
    PERFORM pg_notify('${KEYS_CHANNEL}', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
  END
  $$;
  -- DELETE too: a row removed by hand in psql must stop working everywhere like a revoked one.
  CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION govgate_api_keys_changed();
  `,
  // The central audit trail the gateways ship their committed rows to (fleet/shipper.ts).
  CENTRAL_AUDIT_MIGRATION,
];

/** Any 64-bit number unlikely to be used by another application's advisory locks on the same database. */
const MIGRATION_LOCK = 0x676f7667617465n; // "govgate"

/**
 * Brings the central schema up to date. Gateways of a fleet start together,
 * so the steps run in one transaction under an advisory lock: the second
 * gateway waits, then finds the work done. The lock is a transaction lock,
 * released by COMMIT or ROLLBACK, so a gateway that dies mid-way holds nothing.
 */
export async function migrateCentralSchema(db: FleetDatabase): Promise<void> {
  await db.transaction(async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
    await client.query('CREATE TABLE IF NOT EXISTS govgate_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    const { rows } = await client.query<{ version: number }>('SELECT COALESCE(MAX(version), 0)::int AS version FROM govgate_schema');
    const current = rows[0]?.version ?? 0;
    if (current > CENTRAL_MIGRATIONS.length) {
      throw new Error(`the fleet database has central schema version ${current}, newer than this govgate understands (${CENTRAL_MIGRATIONS.length}); upgrade this gateway`);
    }
    for (let v = current; v < CENTRAL_MIGRATIONS.length; v++) {
      await client.query(CENTRAL_MIGRATIONS[v]!);
      await client.query('INSERT INTO govgate_schema (version) VALUES ($1)', [v + 1]);
    }
  });
}
