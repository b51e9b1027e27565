import type { CounterCheck, CounterStore, BucketCounts } from './counter-store.js';
import { isBudget, LIMIT_UNITS, type AppliedLimit, type LimitKind } from '../policy/limit-kinds.js';
import { rateLimitHeaders, type LimitState } from './ratelimit-headers.js';
import { counterKey, windowOf, type Window } from './windows.js';
import type { OutgoingHttpHeaders } from 'node:http';

/** A rough prompt size: about four bytes of JSON per token, which over- rather than under-counts English text. */
const BYTES_PER_TOKEN = 4;

/** What a request is expected to cost before the provider says what it did. */
export interface TokenEstimate {
  readonly maxTokens: number | null;
  readonly bodyBytes: number;
}

/** Tokens held for a forwarded request until its real usage is known. */
export interface Reservation {
  /** Tokens reserved on every token counter; 0 when only request limits apply. */
  readonly tokens: number;
  readonly tokenKeys: readonly string[];
}

export interface LimitRefusal {
  readonly limit: AppliedLimit;
  readonly used: number;
  readonly requested: number;
  readonly retryAfterMs: number;
  /** For the audit row: `limit requests_per_minute: customer acme 60/min`. */
  readonly reason: string;
  /** For the client, in the style of the provider's own 429 messages. */
  readonly message: string;
}

export type Admission =
  | { readonly kind: 'unlimited' }
  | { readonly kind: 'admitted'; readonly reservation: Reservation; readonly headers: OutgoingHttpHeaders }
  | { readonly kind: 'refused'; readonly refusal: LimitRefusal; readonly headers: OutgoingHttpHeaders };

/**
 * Reservation and settlement. Before forwarding, one atomic reservation takes
 * a request from every request counter and the estimated tokens from every
 * token counter; after the response, the reservation is settled with the
 * tokens the provider reported. A burst can therefore overshoot a token limit
 * only by what in-flight requests use beyond their reservations.
 */
export class Limiter {
  constructor(
    private readonly store: CounterStore,
    private readonly defaultTokenReservation: number,
    /** Settlement happens after the response, on nobody's path: its failures are reported, not thrown. */
    private readonly onSettleFailure: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The tokens a request reserves: its prompt estimated from its size, plus its
   * completion cap (or the configured default). A request without a body
   * (listing models, fetching a file) generates nothing and reserves nothing.
   */
  estimate(e: TokenEstimate): number {
    if (e.bodyBytes === 0) return 0;
    return Math.ceil(e.bodyBytes / BYTES_PER_TOKEN) + (e.maxTokens === null ? this.defaultTokenReservation : Math.ceil(e.maxTokens));
  }

  /** Throws StoreUnavailableError when the store cannot answer. */
  async admit(limits: readonly AppliedLimit[], estimate: TokenEstimate): Promise<Admission> {
    if (limits.length === 0) return { kind: 'unlimited' };
    const now = this.now();
    const tokens = limits.some((l) => LIMIT_UNITS[l.kind].unit === 'tokens') ? this.estimate(estimate) : 0;
    const windows = limits.map((l) => windowOf(l.kind, now));
    const checks: CounterCheck[] = limits.map((l, i) => {
      const w = windows[i]!;
      return {
        key: counterKey(l.scope, l.id, l.kind, w.start),
        prevKey: w.prevStart === null ? null : counterKey(l.scope, l.id, l.kind, w.prevStart),
        prevWeight: w.prevWeight,
        limit: l.limit,
        cost: costOf(l.kind, tokens),
        keepMs: w.keepMs,
      };
    });
    const result = await this.store.reserve(checks);
    const states: LimitState[] = limits.map((l, i) => stateOf(l, windows[i]!, result.counts[i]!, checks[i]!.cost, result.ok, now));
    if (result.ok) {
      const tokenKeys = checks.filter((_, i) => LIMIT_UNITS[limits[i]!.kind].unit === 'tokens').map((c) => c.key);
      return { kind: 'admitted', reservation: { tokens, tokenKeys }, headers: rateLimitHeaders(states, null) };
    }
    const at = states.findIndex((s) => s.exceeded);
    const failing = states[at]!;
    const counts = result.counts[at]!;
    // What the window holds, rounded up (less a float's error) so a refusal never reads as room left over.
    const held = Math.ceil(counts.current + counts.previous * windows[at]!.prevWeight - 1e-6);
    return { kind: 'refused', refusal: refusalOf(failing, held), headers: rateLimitHeaders(states, failing) };
  }

  /**
   * Counts a request that is not forwarded (refused by the policy, unreadable,
   * a check) against every request-count limit, without refusing it: every
   * request a key makes costs it, or refusals would be free to repeat.
   */
  charge(limits: readonly AppliedLimit[]): void {
    const counted = limits.filter((l) => LIMIT_UNITS[l.kind].unit === 'requests');
    if (counted.length === 0) return;
    const now = this.now();
    const checks: CounterCheck[] = counted.map((l) => {
      const w = windowOf(l.kind, now);
      return { key: counterKey(l.scope, l.id, l.kind, w.start), prevKey: null, prevWeight: 0, limit: Number.MAX_SAFE_INTEGER, cost: 1, keepMs: w.keepMs };
    });
    this.store.reserve(checks).catch(this.onSettleFailure);
  }

  /**
   * Replaces the reserved tokens with what the request used: `used` tokens,
   * 0 to release a request that consumed nothing, or null to keep the
   * reservation as the best guess when the usage is unknown.
   */
  settle(reservation: Reservation, used: number | null): void {
    if (used === null || reservation.tokenKeys.length === 0 || used === reservation.tokens) return;
    const delta = used - reservation.tokens;
    this.store.adjust(reservation.tokenKeys.map((key) => ({ key, delta }))).catch(this.onSettleFailure);
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

function costOf(kind: LimitKind, tokens: number): number {
  return LIMIT_UNITS[kind].unit === 'requests' ? 1 : tokens;
}

function stateOf(limit: AppliedLimit, w: Window, counts: BucketCounts, cost: number, admitted: boolean, now: number): LimitState {
  const estimate = counts.current + counts.previous * w.prevWeight;
  const used = Math.floor(estimate);
  const exceeded = !admitted && estimate + cost > limit.limit;
  const after = admitted ? counts.current + cost : counts.current;
  return {
    limit,
    used,
    requested: cost,
    exceeded,
    remaining: Math.max(0, Math.floor(limit.limit - estimate - (admitted ? cost : 0))),
    // A sliding window is back to full once its current bucket has slid out; a calendar one at its end.
    resetMs: w.prevStart === null ? w.end - now : after > 0 ? w.end - now + (w.end - w.start) : counts.previous > 0 ? w.end - now : 0,
    retryAfterMs: exceeded ? waitFor(limit.limit, cost, counts, w, now) : 0,
  };
}

/** How long until `cost` fits: when the previous bucket has decayed enough, or the current one has slid far enough out. */
function waitFor(limit: number, cost: number, counts: BucketCounts, w: Window, now: number): number {
  const length = w.end - w.start;
  if (w.prevStart === null || cost > limit) return w.end - now;
  const room = limit - cost - counts.current;
  if (room >= 0 && counts.previous > 0) return Math.ceil((w.prevWeight - room / counts.previous) * length);
  return Math.ceil(w.end - now + (1 - (limit - cost) / counts.current) * length);
}

function refusalOf(s: LimitState, held: number): LimitRefusal {
  const { limit } = s;
  const { per } = LIMIT_UNITS[limit.kind];
  const whose = `${limit.scope} ${limit.id}`;
  return {
    limit,
    used: s.used,
    requested: s.requested,
    retryAfterMs: s.retryAfterMs,
    reason: `limit ${limit.kind}: ${whose} ${limit.limit}/${per}`,
    message: refusalMessage({ ...s, held }),
  };
}

/** Where a limit's count is taken, in words. */
const SPAN: Readonly<Record<string, string>> = { min: 'in the last minute', day: 'today (UTC)', month: 'this month (UTC)' };

/**
 * The client's 429 message: what the window holds against the limit and when
 * room frees. The count is rounded up, because a sliding window weighs the
 * previous minute by a fraction and "Used 1 of 2" next to a refusal reads as a bug.
 */
export function refusalMessage(s: Pick<LimitState, 'limit' | 'used' | 'requested' | 'retryAfterMs'> & { readonly held?: number }): string {
  const { limit } = s;
  const { unit, per } = LIMIT_UNITS[limit.kind];
  const lead = `${isBudget(limit.kind) ? 'Token budget exhausted' : 'Rate limit reached'} for ${limit.scope} ${limit.id} on ${limit.kind.replaceAll('_', ' ')}`;
  const count = (n: number) => `${n} ${n === 1 ? unit.replace(/s$/, '') : unit}`;
  if (s.requested > limit.limit) {
    return `${lead}: this request needs ${count(s.requested)}, more than the whole limit of ${limit.limit}, and will never fit; lower max_tokens.`;
  }
  const held = Math.min(limit.limit, s.held ?? s.used);
  const span = SPAN[per] ?? `per ${per}`;
  const holds = held >= limit.limit
    ? `${count(held)} ${span} already use the limit of ${limit.limit}`
    : `${count(held)} ${span} leave ${limit.limit - held} of the limit of ${limit.limit}, and this request needs ${s.requested}`;
  const wait = formatWait(s.retryAfterMs);
  const frees = isBudget(limit.kind) ? `the budget resets in ${wait}` : unit === 'requests' ? `one frees in ${wait}` : `enough frees in ${wait}`;
  return `${lead}: ${holds}; ${frees}.`;
}

/** `23s`, `14m`, `5h 20m`: seconds are noise once the wait is long. */
function formatWait(ms: number): string {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 120) return `${minutes}m`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}
