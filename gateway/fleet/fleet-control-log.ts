import type pg from 'pg';
import { GENESIS_HASH, rowHash } from '../store/chain.js';
import type { ControlEventRow } from '../audit/control-log.js';

/**
 * The chain of control events that belong to the fleet rather than to one
 * gateway: key changes made by the CLI in fleet mode, where no gateway's local
 * file is involved. '@' cannot start a gateway id (fleet-config.ts), so this
 * chain never collides with a gateway's, and `audit verify --fleet` walks it
 * like any other.
 */
export const FLEET_CHAIN_ID = '@fleet';

/** Appends one event to the fleet's chain inside the caller's transaction; the lock serialises CLIs appending at once, so the chain cannot fork. */
export async function appendFleetControlEvent(client: pg.PoolClient, event: ControlEventRow): Promise<void> {
  await client.query("SELECT pg_advisory_xact_lock(hashtext('govgate.fleet_control_log'))");
  const { rows } = await client.query<{ row_id: string; hash: string }>(
    'SELECT row_id::text AS row_id, hash FROM audit_event WHERE gateway_id = $1 ORDER BY audit_event.row_id DESC LIMIT 1',
    [FLEET_CHAIN_ID],
  );
  const tail = rows[0];
  const prev = tail?.hash ?? GENESIS_HASH;
  await client.query(
    `INSERT INTO audit_event (gateway_id, row_id, id, kind, actor, detail, created_at, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, ($7::timestamp AT TIME ZONE 'UTC'), $8, $9)`,
    [FLEET_CHAIN_ID, tail ? Number(tail.row_id) + 1 : 1, event.id, event.kind, event.actor, event.detail, event.created_at, prev, rowHash('audit_event', prev, event)],
  );
}
