import { GatewayError } from '../errors/catalogue.js';
import type { MetadataValue } from '../policy/request-facts.js';

export const METADATA_HEADER = 'x-governance-metadata';
const MAX_METADATA_BYTES = 4096;
const MAX_KEY_LENGTH = 128;

export type Metadata = Readonly<Record<string, MetadataValue>>;
export const NO_METADATA: Metadata = Object.freeze(Object.create(null));

/**
 * Parses `X-Governance-Metadata`: a flat JSON object of string, number and
 * boolean values, at most 4 KiB. Error messages name the problem, never the value.
 */
export function parseGovernanceMetadata(header: string | string[] | undefined): Metadata {
  if (header === undefined) return NO_METADATA;
  // Node joins repeated custom headers into one string; the array form is only what its types allow.
  if (typeof header !== 'string') throw invalid('X-Governance-Metadata', 'must be sent once');
  if (Buffer.byteLength(header) > MAX_METADATA_BYTES) throw invalid('X-Governance-Metadata', `is over ${MAX_METADATA_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(header);
  } catch {
    throw invalid('X-Governance-Metadata', 'is not valid JSON');
  }
  return toMetadata(parsed, 'X-Governance-Metadata');
}

/** Validates an already parsed metadata object (the header's, or `/v1/check`'s `metadata`). */
export function toMetadata(parsed: unknown, param: string): Metadata {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid(param, 'must be a JSON object');
  const out: Record<string, MetadataValue> = Object.create(null);
  for (const [key, value] of Object.entries(parsed)) {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH) throw invalid(param, `keys must be 1 to ${MAX_KEY_LENGTH} characters`);
    if (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) out[key] = value;
    else throw invalid(param, `value of "${key}" must be a string, number or boolean`);
  }
  return Object.freeze(out);
}

function invalid(param: string, problem: string): GatewayError {
  return new GatewayError('invalid_request', `${param} ${problem}`, { param });
}
