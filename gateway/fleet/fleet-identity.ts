import type pg from 'pg';
import type { Db } from '../store/connection.js';
import { shippedTable, SHIPPED_TABLES, type ShippedTableName } from './shipped-tables.js';

/** How far one table of this gateway has been shipped: the local rowid of the last row, and its hash for a chain. */
export interface CentralMark {
  readonly rowId: number;
  readonly hash: string | null;
}

export type CentralMarks = Map<ShippedTableName, CentralMark>;

/** This gateway id belongs to another file, or this file does not continue what was shipped under it: nothing may be shipped. */
export class IdentityConflict extends Error {}

/**
 * Takes the lease on the gateway id for this file, or finds it taken: the
 * first file to ship under an id owns it for good (the central triggers keep
 * the row), so a second gateway given the same id, or this one after its
 * disk was lost, is refused instead of writing into the other's chains.
 * Returns the central watermarks; runs inside the caller's transaction.
 */
export async function claimGatewayId(client: pg.PoolClient, gatewayId: string, fileId: string, instance: string): Promise<CentralMarks> {
  await client.query('INSERT INTO fleet_gateway (gateway_id, file_id, instance) VALUES ($1, $2, $3) ON CONFLICT (gateway_id) DO NOTHING', [gatewayId, fileId, instance]);
  await checkLease(client, gatewayId, fileId);
  await client.query('UPDATE fleet_gateway SET instance = $2, heartbeat_at = now() WHERE gateway_id = $1', [gatewayId, instance]);
  const { rows } = await client.query<{ table_name: ShippedTableName; through_row_id: string; through_hash: string | null }>(
    'SELECT table_name, through_row_id, through_hash FROM fleet_shipped WHERE gateway_id = $1',
    [gatewayId],
  );
  return new Map(rows.map((r) => [r.table_name, { rowId: Number(r.through_row_id), hash: r.through_hash }]));
}

/** Locks the lease row for the transaction, so two processes shipping under one id take turns and see each other's watermark. */
export async function checkLease(client: pg.PoolClient, gatewayId: string, fileId: string): Promise<void> {
  const { rows } = await client.query<{ file_id: string }>('SELECT file_id FROM fleet_gateway WHERE gateway_id = $1 FOR UPDATE', [gatewayId]);
  const owner = rows[0]?.file_id;
  if (owner !== fileId) {
    throw new IdentityConflict(`gateway id "${gatewayId}" belongs to another audit file (file_id ${owner ?? 'none'}; this file is ${fileId}): another gateway has the same fleet.gateway_id, or this gateway's audit file was replaced; give this gateway a fleet.gateway_id of its own`);
  }
}

/**
 * Whether this file continues what was shipped under the id: for each table
 * the local file must reach the central watermark, and for a chain its row
 * there (or the anchor retention left for it) must have the central hash. A
 * backup restored over newer shipped rows fails here, before it could ship a
 * second version of the same row ids.
 */
export function checkContinuity(db: Db, marks: CentralMarks): void {
  const anchorThrough = db.prepare('SELECT max(through_rowid) FROM audit_anchor WHERE chain = ?').pluck();
  const anchorHash = db.prepare('SELECT through_hash FROM audit_anchor WHERE chain = ? AND through_rowid = ? ORDER BY id DESC LIMIT 1').pluck();
  for (const name of SHIPPED_TABLES) {
    const mark = marks.get(name);
    if (!mark || mark.rowId === 0) continue;
    const t = shippedTable(name);
    const maxRow = (db.prepare(`SELECT max(rowid) FROM ${name}`).pluck().get() as number | null) ?? 0;
    const localEnd = Math.max(maxRow, t.chain ? ((anchorThrough.get(t.chain) as number | null) ?? 0) : 0);
    if (localEnd < mark.rowId) {
      throw new IdentityConflict(`this audit file ends at row ${localEnd} of ${name}, but row ${mark.rowId} was already shipped under this gateway id: the file is older than what it shipped (restored from a backup?); give this gateway a fleet.gateway_id of its own`);
    }
    if (!t.chain || mark.hash === null) continue;
    const local = (db.prepare(`SELECT hash FROM ${name} WHERE rowid = ?`).pluck().get(mark.rowId) as string | null | undefined) ?? (anchorHash.get(t.chain, mark.rowId) as string | undefined);
    if (local !== undefined && local !== mark.hash) {
      throw new IdentityConflict(`row ${mark.rowId} of ${name} in this audit file is not the row shipped under this gateway id (hashes differ): give this gateway a fleet.gateway_id of its own`);
    }
  }
}
