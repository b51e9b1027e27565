import type { LimitKind } from '../policy/limit-kinds.js';

const MINUTE_MS = 60_000;

/**
 * The counting window of a limit at one instant. Per-minute limits are a
 * sliding window approximated from two fixed buckets: the current minute
 * counts whole and the previous one by the share of it still inside the
 * sliding minute. Day and month budgets are calendar periods in UTC, as
 * providers bill them, with nothing carried over.
 */
export interface Window {
  readonly start: number;
  readonly end: number;
  /** The previous bucket's start, for sliding windows. */
  readonly prevStart: number | null;
  /** How much of the previous bucket still counts (0 to 1). */
  readonly prevWeight: number;
  /** How long the bucket must be kept: to its end, and one more minute for a sliding window's successor. */
  readonly keepMs: number;
}

export function windowOf(kind: LimitKind, now: number): Window {
  if (kind === 'requests_per_minute' || kind === 'tokens_per_minute') {
    const start = now - (now % MINUTE_MS);
    return { start, end: start + MINUTE_MS, prevStart: start - MINUTE_MS, prevWeight: 1 - (now - start) / MINUTE_MS, keepMs: start + 2 * MINUTE_MS - now };
  }
  const d = new Date(now);
  const start = kind === 'tokens_per_day'
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
    : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const end = kind === 'tokens_per_day'
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
    : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return { start, end, prevStart: null, prevWeight: 0, keepMs: end - now };
}

/** The store key of one counter bucket: by scope, id and kind, never by policy object, so a reload keeps it. */
export function counterKey(scope: string, id: string, kind: LimitKind, bucketStart: number): string {
  return `${scope}:${id}:${kind}:${bucketStart}`;
}
