import { displayPrefix, generateKey, keyDigest, newKeyId } from '../auth/key-format.js';
import { checkCustomerId, KeyStoreError, type ApiKeyRecord, type CreatedKey } from '../auth/key-store.js';
import { controlEvent } from '../audit/control-log.js';
import { appendFleetControlEvent } from './fleet-control-log.js';
import type { FleetDatabase } from './fleet-database.js';

/**
 * Keys in the fleet's PostgreSQL, mirroring auth/key-store.ts: the same key
 * format, digest and records, so the CLI prints the same lines and a gateway
 * authenticates the same way whichever store the keys came from.
 */

/** Times in the local store's text form (sqliteTime), so listings read the same in both modes. */
const time = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')`;
const COLUMNS = `id, customer_id, name, prefix, ${time('created_at')} AS created_at, ${time('revoked_at')} AS revoked_at`;

/** Creates a key and its `key.created` event in one transaction: no key exists without its record. */
export async function createCentralKey(db: FleetDatabase, customerId: string, name: string | null, actor: string): Promise<CreatedKey> {
  checkCustomerId(customerId);
  const key = generateKey();
  const id = newKeyId();
  await db.transaction(async (client) => {
    await client.query('INSERT INTO api_keys (id, customer_id, name, prefix, digest) VALUES ($1, $2, $3, $4, $5)', [id, customerId, name, displayPrefix(key), keyDigest(key)]);
    await appendFleetControlEvent(client, controlEvent('key.created', actor, { key_id: id, customer_id: customerId, name }));
  });
  return { id, customer_id: customerId, name, key };
}

export async function listCentralKeys(db: FleetDatabase, customerId?: string): Promise<ApiKeyRecord[]> {
  const { rows } = customerId === undefined
    ? await db.query<ApiKeyRecord>(`SELECT ${COLUMNS} FROM api_keys ORDER BY created_at, id`)
    : await db.query<ApiKeyRecord>(`SELECT ${COLUMNS} FROM api_keys WHERE customer_id = $1 ORDER BY created_at, id`, [customerId]);
  return rows;
}

export async function revokeCentralKey(db: FleetDatabase, keyId: string, actor: string): Promise<void> {
  // One conditional UPDATE: two operators revoking at once cannot both succeed, and the first revocation time stays.
  const revoked = await db.transaction(async (client) => {
    const updated = await client.query<{ customer_id: string }>('UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING customer_id', [keyId]);
    const row = updated.rows[0];
    if (row === undefined) return false;
    await appendFleetControlEvent(client, controlEvent('key.revoked', actor, { key_id: keyId, customer_id: row.customer_id }));
    return true;
  });
  if (revoked) return;
  const { rows } = await db.query<{ revoked_at: string | null }>(`SELECT ${time('revoked_at')} AS revoked_at FROM api_keys WHERE id = $1`, [keyId]);
  const row = rows[0];
  if (!row) throw new KeyStoreError('key_not_found', `no key with id ${keyId}`);
  throw new KeyStoreError('already_revoked', `key ${keyId} was already revoked at ${row.revoked_at ?? 'an unknown time'}`);
}

/** A counter bumped in the transaction of every key change (central-schema.ts); polling it costs one tiny row. */
export async function readKeyVersion(db: FleetDatabase): Promise<string> {
  const { rows } = await db.query<{ version: string }>('SELECT version::text AS version FROM govgate_key_version');
  const version = rows[0]?.version;
  if (version === undefined) throw new Error('the fleet database has no govgate_key_version row');
  return version;
}

export interface CentralKeys {
  /** The key version the keys are at least as new as. */
  readonly version: string;
  readonly byDigest: Map<string, ApiKeyRecord>;
}

/** Active keys by digest, for a gateway's in-memory registry. */
export async function loadActiveCentralKeys(db: FleetDatabase): Promise<CentralKeys> {
  // Version first: a change committed between the two reads makes the keys newer than the version, never older, so the next poll reloads rather than misses it.
  const version = await readKeyVersion(db);
  const { rows } = await db.query<ApiKeyRecord & { digest: string }>(`SELECT ${COLUMNS}, digest FROM api_keys WHERE revoked_at IS NULL`);
  const byDigest = new Map<string, ApiKeyRecord>();
  for (const { digest, ...record } of rows) byDigest.set(digest, Object.freeze(record));
  return { version, byDigest };
}
