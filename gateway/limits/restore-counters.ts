import { requestsPerMinute, tokensPer } from '../audit/usage-queries.js';
import type { Db } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';
import type { LimitKind, LimitScope } from '../policy/limit-kinds.js';
import type { MemoryStore } from './memory-store.js';
import { counterKey, windowOf } from './windows.js';

const MINUTE_MS = 60_000;

export interface Restored {
  readonly requests: number;
  readonly tokens: number;
}

/**
 * Rebuilds the in-process counters from the audit log at start-up, so a
 * restart does not hand out a fresh budget: the requests of the last two
 * minutes (all but those a limit refused), and the tokens the provider reported for requests of the current
 * minutes, day and month. The queries (audit/usage-queries.ts) range over
 * `usagelog.created_at` (indexed) and join outcomes by their primary key. In-flight reservations of
 * the process that stopped are not known and start at zero.
 */
export function restoreCounters(db: Db, store: MemoryStore, now: number = Date.now()): Restored {
  const counters = new Map<string, { count: number; keepMs: number }>();
  const add = (scope: LimitScope, id: string, kind: LimitKind, bucketStart: number, keepMs: number, count: number) => {
    const key = counterKey(scope, id, kind, bucketStart);
    const existing = counters.get(key);
    if (existing) existing.count += count;
    else counters.set(key, { count, keepMs });
  };
  const both = (customer: string, keyId: string, kind: LimitKind, bucketStart: number, keepMs: number, count: number) => {
    add('customer', customer, kind, bucketStart, keepMs, count);
    add('key', keyId, kind, bucketStart, keepMs, count);
  };

  const minute = windowOf('requests_per_minute', now);
  const sinceMinute = sqliteTime(new Date(minute.prevStart!));
  let requests = 0;
  let tokens = 0;
  for (const r of requestsPerMinute(db, sinceMinute)) {
    const start = minuteStart(r.period);
    both(r.customer_id, r.api_key_id, 'requests_per_minute', start, start + 2 * MINUTE_MS - now, r.n);
    requests += r.n;
  }
  for (const r of tokensPer(db, 'minute', sinceMinute)) {
    const start = minuteStart(r.period);
    both(r.customer_id, r.api_key_id, 'tokens_per_minute', start, start + 2 * MINUTE_MS - now, r.n);
  }

  const day = windowOf('tokens_per_day', now);
  const month = windowOf('tokens_per_month', now);
  const today = sqliteTime(new Date(day.start)).slice(0, 10);
  for (const r of tokensPer(db, 'day', sqliteTime(new Date(month.start)))) {
    both(r.customer_id, r.api_key_id, 'tokens_per_month', month.start, month.keepMs, r.n);
    if (r.period === today) both(r.customer_id, r.api_key_id, 'tokens_per_day', day.start, day.keepMs, r.n);
    tokens += r.n;
  }

  for (const [key, { count, keepMs }] of counters) store.seed(key, count, keepMs);
  return { requests, tokens };
}

/** `YYYY-MM-DD HH:MM` (UTC) to epoch milliseconds. */
function minuteStart(minute: string): number {
  return Date.parse(`${minute.replace(' ', 'T')}:00Z`);
}
