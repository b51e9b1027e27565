import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { isWellFormedKey } from './key-format.js';
import type { KeyRegistry } from './key-registry.js';
import type { ApiKeyRecord } from './key-store.js';

export type AuthFailure = 'missing' | 'malformed' | 'unknown';

export class AuthenticationError extends GatewayError {
  /** `detail` says what is wrong with a malformed key's shape; it never contains the key. */
  constructor(readonly failure: AuthFailure, detail?: string) {
    super('invalid_api_key', failure === 'missing'
      ? 'Missing API key: send it as "Authorization: Bearer <key>" or "api-key: <key>"'
      : detail ?? 'Invalid API key: the key is malformed, unknown or revoked');
  }
}

/** Keys the providers issue (OpenAI's `sk-…`, `sk-proj-…`, Anthropic's `sk-ant-…`): a client configured with the provider's key instead of the gateway's. */
const PROVIDER_KEY = /^sk-/;
/** A client that adds "Bearer " itself, given a value that already has it. */
const DOUBLED_BEARER = /^Bearer[ \t]+Bearer[ \t]+\S+[ \t]*$/i;

const DOUBLED_BEARER_MESSAGE = 'Invalid API key: the Authorization header says Bearer twice ("Bearer Bearer <key>"); send "Authorization: Bearer <key>", or give the client the bare key if it adds "Bearer " itself';
const PROVIDER_KEY_MESSAGE = 'Invalid API key: this is a provider key (sk-…); send a gateway key gg_… from `govgate keys create`. The provider key belongs in the gateway\'s environment, not the client\'s';

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
  // The newcomer's two mistakes are told apart only once a key has failed, so a good key pays for no extra test.
  if (key === undefined || key === '') {
    const doubled = typeof headers.authorization === 'string' && DOUBLED_BEARER.test(headers.authorization);
    throw doubled ? new AuthenticationError('malformed', DOUBLED_BEARER_MESSAGE) : new AuthenticationError('missing');
  }
  if (!isWellFormedKey(key)) throw new AuthenticationError('malformed', PROVIDER_KEY.test(key) ? PROVIDER_KEY_MESSAGE : undefined);
  const record = registry.lookup(key);
  if (!record) throw new AuthenticationError('unknown');
  return record;
}
