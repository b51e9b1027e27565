import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { isWellFormedKey } from './key-format.js';
import type { KeyRegistry } from './key-registry.js';
import type { ApiKeyRecord } from './key-store.js';

export type AuthFailure = 'missing' | 'malformed' | 'unknown';

export class AuthenticationError extends GatewayError {
  constructor(readonly failure: AuthFailure) {
    super('invalid_api_key', failure === 'missing'
      ? 'Missing API key: send it as "Authorization: Bearer <key>" or "api-key: <key>"'
      : 'Invalid API key: the key is malformed, unknown or revoked');
  }
}

/** The key a client presented, from `Authorization: Bearer` or `api-key`. */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (auth !== undefined) {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    return match?.[1] ?? '';
  }
  const apiKey = headers['api-key'];
  return typeof apiKey === 'string' ? apiKey.trim() : undefined;
}

/**
 * Authentication stage: the key must be present, well formed (checksum, no
 * database look-up) and active. Revoked and unknown keys fail alike.
 */
export function authenticate(headers: IncomingHttpHeaders, registry: KeyRegistry): ApiKeyRecord {
  const key = presentedKey(headers);
  if (key === undefined || key === '') throw new AuthenticationError('missing');
  if (!isWellFormedKey(key)) throw new AuthenticationError('malformed');
  const record = registry.lookup(key);
  if (!record) throw new AuthenticationError('unknown');
  return record;
}
