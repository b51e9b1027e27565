import type { KeyPath, YamlSource } from '../config/yaml-source.js';
import { readInteger, readMap } from '../config/validate.js';
import { LIMIT_KINDS, type LimitKind, type LimitSet } from './limit-kinds.js';

const MAX_LIMIT = 1_000_000_000_000;
const KEY_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The limit keys a customer mapping may carry beside its model and operation lists. */
export const CUSTOMER_LIMIT_KEYS = [...LIMIT_KINDS, 'keys'] as const;

/** The limits set in one customer's (or one key's) mapping. */
export function readLimitSet(src: YamlSource, at: KeyPath, raw: Record<string, unknown>): LimitSet {
  const set: Partial<Record<LimitKind, number>> = {};
  for (const kind of LIMIT_KINDS) {
    if (raw[kind] !== undefined) set[kind] = readInteger(src, [...at, kind], raw[kind], { min: 1, max: MAX_LIMIT });
  }
  return set;
}

/** `keys: {<key id>: {requests_per_minute: …}}` under a customer: limits of single keys, on top of the customer's. */
export function readKeyLimits(src: YamlSource, at: KeyPath, raw: unknown): ReadonlyMap<string, LimitSet> {
  const out = new Map<string, LimitSet>();
  if (raw === undefined || raw === null) return out;
  const keys = readMap(src, at, raw, null);
  for (const [keyId, limits] of Object.entries(keys)) {
    if (!KEY_ID.test(keyId)) src.fail([...at, keyId], 'is not a key id (as `govgate keys list` shows them)');
    const set = readLimitSet(src, [...at, keyId], readMap(src, [...at, keyId], limits ?? {}, LIMIT_KINDS));
    if (Object.keys(set).length === 0) src.fail([...at, keyId], `sets no limit (expected one of: ${LIMIT_KINDS.join(', ')})`);
    out.set(keyId, set);
  }
  return out;
}
