import { setImmediate as nextTurn } from 'node:timers/promises';
import { sqliteTime } from '../audit/database.js';
import type { Rule } from '../policy/policy-types.js';
import { blockingCauses } from './blocking-reasons.js';
import { RISK_BUCKETS, type AdminQueries, type GroupRow, type HourCounts, type ReasonRow, type TokenRow } from './admin-queries.js';

const HOUR_MS = 3_600_000;
const HOURS_SHOWN = 24;
const DAYS_SHOWN = 30;
/** The hour still being written is re-read at most this often. */
const OPEN_HOUR_TTL_MS = 2_000;
/**
 * A finished hour no longer changes except by retention, so it is kept much
 * longer: rows retention deletes leave the charts within this time. Each
 * hour's lifetime is drawn between half of it and all of it, so the 720
 * hours of a first load are not all re-read by the same later reload.
 */
const CLOSED_HOUR_TTL_MS = 60 * 60_000;
/** The outcome join is the costliest statement, so it reads a quarter of an hour at a time. */
const TOKEN_SLICES = 4;
/** Rows are stamped before they commit; an hour counts as finished only this long after it ends. */
const COMMIT_GRACE_MS = 10_000;
const TOP_CAUSES = 10;
const MAX_GROUPS = 500;

interface HourDetail {
  readonly groups: readonly GroupRow[];
  readonly tokens: readonly TokenRow[];
  readonly reasons: readonly ReasonRow[];
}

interface Cached<T> {
  readonly value: T;
  readonly until: number;
}

export interface Summary {
  readonly generated_at: string;
  readonly hourly: { hour: string; allowed: number; blocked: number }[];
  readonly daily: { day: string; allowed: number; blocked: number }[];
  /** Over the last 24 hours. */
  readonly risk: { from: number; to: number; count: number }[];
  readonly blocking: { cause: string; count: number }[];
  readonly customers: { customer: string; model: string | null; requests: number; blocked: number; avg_risk: number; tokens: number | null }[];
}

/**
 * The dashboard's aggregates, built one hour at a time from the read-only
 * queries with the event loop free between hours, and cached per hour so a
 * reload only re-reads the hour in progress.
 */
export class DashboardData {
  private readonly counts = new Map<string, Cached<HourCounts>>();
  private readonly details = new Map<string, Cached<HourDetail>>();
  private building: Promise<Summary> | null = null;

  constructor(
    private readonly queries: AdminQueries,
    private readonly rules: () => readonly Rule[],
  ) {}

  /** Concurrent callers share one build. */
  summary(now: Date = new Date()): Promise<Summary> {
    this.building ??= this.build(now).finally(() => {
      this.building = null;
    });
    return this.building;
  }

  private async build(now: Date): Promise<Summary> {
    const currentHour = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS;
    const today = Math.floor(now.getTime() / (24 * HOUR_MS)) * 24 * HOUR_MS;
    const firstDay = today - (DAYS_SHOWN - 1) * 24 * HOUR_MS;
    this.forgetBefore(Math.min(firstDay, currentHour - (HOURS_SHOWN - 1) * HOUR_MS), now);

    const daily: Summary['daily'] = [];
    for (let day = firstDay; day <= today; day += 24 * HOUR_MS) {
      let allowed = 0;
      let blocked = 0;
      for (let hour = day; hour < day + 24 * HOUR_MS && hour <= currentHour; hour += HOUR_MS) {
        const c = await this.hourCounts(hour, now);
        allowed += c.allowed;
        blocked += c.blocked;
      }
      daily.push({ day: sqliteTime(new Date(day)).slice(0, 10), allowed, blocked });
    }

    const hourly: Summary['hourly'] = [];
    const risk = new Array<number>(RISK_BUCKETS).fill(0);
    const causes = new Map<string, number>();
    const groups = new Map<string, { customer: string; model: string | null; requests: number; blocked: number; riskSum: number; tokens: number | null }>();
    const rules = this.rules();
    for (let hour = currentHour - (HOURS_SHOWN - 1) * HOUR_MS; hour <= currentHour; hour += HOUR_MS) {
      const c = await this.hourCounts(hour, now);
      hourly.push({ hour: sqliteTime(new Date(hour)).slice(0, 16), allowed: c.allowed, blocked: c.blocked });
      c.risk.forEach((n, i) => (risk[i]! += n));
      const d = await this.hourDetail(hour, now);
      for (const row of d.reasons) {
        for (const cause of blockingCauses(row, rules)) causes.set(cause, (causes.get(cause) ?? 0) + row.n);
      }
      for (const g of d.groups) {
        const key = JSON.stringify([g.customer_id, g.model]);
        const acc = groups.get(key) ?? { customer: g.customer_id, model: g.model, requests: 0, blocked: 0, riskSum: 0, tokens: null };
        acc.requests += g.requests;
        acc.blocked += g.blocked;
        acc.riskSum += g.risk_sum;
        groups.set(key, acc);
      }
      for (const t of d.tokens) {
        const acc = groups.get(JSON.stringify([t.customer_id, t.model]));
        if (acc) acc.tokens = (acc.tokens ?? 0) + t.tokens;
      }
    }

    return {
      generated_at: now.toISOString(),
      hourly,
      daily,
      risk: risk.map((count, i) => ({ from: i * 10, to: i === RISK_BUCKETS - 1 ? 100 : (i + 1) * 10, count })),
      blocking: [...causes].map(([cause, count]) => ({ cause, count })).sort((a, b) => b.count - a.count || a.cause.localeCompare(b.cause)).slice(0, TOP_CAUSES),
      customers: [...groups.values()]
        .sort((a, b) => b.requests - a.requests || a.customer.localeCompare(b.customer))
        .slice(0, MAX_GROUPS)
        .map((g) => ({ customer: g.customer, model: g.model, requests: g.requests, blocked: g.blocked, avg_risk: round(g.riskSum / g.requests), tokens: g.tokens })),
    };
  }

  private hourCounts(hour: number, now: Date): Promise<HourCounts> {
    return this.cached(this.counts, hour, now, async () => {
      await nextTurn();
      return this.queries.hourCounts(sqliteTime(new Date(hour)), sqliteTime(new Date(hour + HOUR_MS)));
    });
  }

  private hourDetail(hour: number, now: Date): Promise<HourDetail> {
    return this.cached(this.details, hour, now, async () => {
      const from = sqliteTime(new Date(hour));
      const to = sqliteTime(new Date(hour + HOUR_MS));
      await nextTurn();
      const groups = this.queries.groups(from, to);
      const reasons = this.queries.blockedReasons(from, to);
      const tokens: TokenRow[] = [];
      const slice = HOUR_MS / TOKEN_SLICES;
      for (let start = hour; start < hour + HOUR_MS; start += slice) {
        await nextTurn();
        tokens.push(...this.queries.tokens(sqliteTime(new Date(start)), sqliteTime(new Date(start + slice))));
      }
      return { groups, reasons, tokens };
    });
  }

  /** Each statement runs in its own event-loop turn, after the requests that queued meanwhile. */
  private async cached<T>(cache: Map<string, Cached<T>>, hour: number, now: Date, read: () => Promise<T>): Promise<T> {
    const key = sqliteTime(new Date(hour));
    const hit = cache.get(key);
    if (hit && hit.until > now.getTime()) return hit.value;
    const value = await read();
    const closed = hour + HOUR_MS + COMMIT_GRACE_MS <= now.getTime();
    const ttl = closed ? CLOSED_HOUR_TTL_MS * (0.5 + Math.random() / 2) : OPEN_HOUR_TTL_MS;
    cache.set(key, { value, until: now.getTime() + ttl });
    return value;
  }

  private forgetBefore(hour: number, now: Date): void {
    const first = sqliteTime(new Date(hour));
    for (const cache of [this.counts, this.details] as Map<string, Cached<unknown>>[]) {
      for (const [key, entry] of cache) {
        if (key < first || entry.until <= now.getTime()) cache.delete(key);
      }
    }
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
