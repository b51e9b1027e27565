import type { Db } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';
import { displayPrefix, generateKey, keyDigest, newKeyId } from './key-format.js';

export interface ApiKeyRecord {
  readonly id: string;
  readonly customer_id: string;
  readonly name: string | null;
  readonly prefix: string;
  readonly created_at: string;
  readonly revoked_at: string | null;
}

export interface CreatedKey {
  readonly id: string;
  readonly customer_id: string;
  readonly name: string | null;
  /** The secret, returned once and never stored. */
  readonly key: string;
}

const CUSTOMER_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export class KeyStoreError extends Error {
  constructor(readonly code: 'invalid_customer' | 'key_not_found' | 'already_revoked', message: string) {
    super(message);
  }
}

/** Shared with the fleet's key store (fleet/central-keys.ts): one rule for customer ids wherever keys live. */
export function checkCustomerId(customerId: string): void {
  if (!CUSTOMER_ID.test(customerId) || customerId === '*') {
    throw new KeyStoreError('invalid_customer', 'customer id must be 1-128 characters of letters, digits, ".", "_", ":" or "-"');
  }
}

export function createKey(db: Db, customerId: string, name: string | null): CreatedKey {
  checkCustomerId(customerId);
  const key = generateKey();
  const id = newKeyId();
  db.prepare('INSERT INTO api_keys (id, customer_id, name, prefix, digest, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
    id, customerId, name, displayPrefix(key), keyDigest(key), sqliteTime(),
  );
  return { id, customer_id: customerId, name, key };
}

export function listKeys(db: Db, customerId?: string): ApiKeyRecord[] {
  const columns = 'id, customer_id, name, prefix, created_at, revoked_at';
  return (customerId === undefined
    ? db.prepare(`SELECT ${columns} FROM api_keys ORDER BY created_at, id`).all()
    : db.prepare(`SELECT ${columns} FROM api_keys WHERE customer_id = ? ORDER BY created_at, id`).all(customerId)) as ApiKeyRecord[];
}

/** Revokes a key; returns the customer it belonged to. */
export function revokeKey(db: Db, keyId: string): string {
  const row = db.prepare('SELECT customer_id, revoked_at FROM api_keys WHERE id = ?').get(keyId) as { customer_id: string; revoked_at: string | null } | undefined;
  if (!row) throw new KeyStoreError('key_not_found', `no key with id ${keyId}`);
  if (row.revoked_at !== null) throw new KeyStoreError('already_revoked', `key ${keyId} was already revoked at ${row.revoked_at}`);
  db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(sqliteTime(), keyId);
  return row.customer_id;
}

/** Active keys by SHA-256 digest, for the gateway's in-memory registry. */
export function loadActiveKeys(db: Db): Map<string, ApiKeyRecord> {
  const rows = db.prepare('SELECT id, customer_id, name, prefix, created_at, revoked_at, digest FROM api_keys WHERE revoked_at IS NULL').all() as (ApiKeyRecord & { digest: string })[];
  const byDigest = new Map<string, ApiKeyRecord>();
  for (const { digest, ...record } of rows) byDigest.set(digest, Object.freeze(record));
  return byDigest;
}
