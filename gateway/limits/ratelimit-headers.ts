import type { OutgoingHttpHeaders } from 'node:http';
import { LIMIT_UNITS, type AppliedLimit } from '../policy/limit-kinds.js';

/** One limit's standing after a reservation was tried. */
export interface LimitState {
  readonly limit: AppliedLimit;
  readonly used: number;
  readonly requested: number;
  readonly exceeded: boolean;
  readonly remaining: number;
  /** Until the counter is back to empty. */
  readonly resetMs: number;
  /** Until this request would fit; 0 unless exceeded. */
  readonly retryAfterMs: number;
}

/**
 * The headers OpenAI sends with its limits: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`,
 * for the tightest request limit and the tightest token limit that applied,
 * and `Retry-After` (whole seconds) on a refusal.
 */
export function rateLimitHeaders(states: readonly LimitState[], refused: LimitState | null): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  for (const unit of ['requests', 'tokens'] as const) {
    const relevant = states.filter((s) => LIMIT_UNITS[s.limit.kind].unit === unit);
    if (relevant.length === 0) continue;
    const tightest = refused && LIMIT_UNITS[refused.limit.kind].unit === unit
      ? refused
      : relevant.reduce((a, b) => (b.remaining < a.remaining ? b : a));
    headers[`x-ratelimit-limit-${unit}`] = String(tightest.limit.limit);
    headers[`x-ratelimit-remaining-${unit}`] = String(tightest.remaining);
    headers[`x-ratelimit-reset-${unit}`] = goDuration(tightest.resetMs);
  }
  if (refused) headers['retry-after'] = String(Math.max(1, Math.ceil(refused.retryAfterMs / 1000)));
  return headers;
}

/** Durations as OpenAI writes them (Go's format): `20ms`, `1s`, `6m0s`, `1h2m3.5s`. */
export function goDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole < 1000) return `${whole}ms`;
  const h = Math.floor(whole / 3_600_000);
  const m = Math.floor((whole % 3_600_000) / 60_000);
  const s = (whole % 60_000) / 1000;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}
