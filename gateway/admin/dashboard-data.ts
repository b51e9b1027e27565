import { setImmediate as nextTurn } from 'node:timers/promises';
import { sqliteTime } from '../store/sqlite-time.js';
import { RISK_BUCKETS, type CauseRow, type GroupRow, type HourCounts, type TokenRow } from './admin-queries.js';
import { rowCauseLabels } from './cause-labels.js';
import { changeSummary } from './change-summary.js';
import type { DashboardSource } from './dashboard-source.js';

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
const CHANGES_SHOWN = 20;

interface HourDetail {
  readonly groups: readonly GroupRow[];
  readonly tokens: readonly TokenRow[];
  readonly causes: readonly CauseRow[];
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
  /** The newest control events first; the control log is never pruned, so this is not limited to 24 hours. In fleet mode each names its gateway. */
  readonly changes: { created_at: string; kind: string; actor: string; summary: string; gateway?: string }[];
  /** Fleet mode only: the gateway the figures are narrowed to, or null for the whole fleet. */
  readonly gateway?: string | null;
  /** Fleet mode only: each gateway's share of the last 24 hours, by gateway id. */
  readonly gateways?: { gateway: string; requests: number; blocked: number; tokens: number | null }[];
}

type GatewayTotals = NonNullable<Summary['gateways']>[number];

/**
 * The dashboard's aggregates, built one hour at a time from the read-only
 * queries with the event loop free between hours, and cached per hour so a
 * reload only re-reads the hour in progress. One instance serves one scope:
 * the whole source, or (fleet mode) one gateway of it, so caches never mix.
 */
export class DashboardData {
  private readonly counts = new Map<string, Cached<HourCounts>>();
  private readonly details = new Map<string, Cached<HourDetail>>();
  private building: Promise<Summary> | null = null;
  private readonly settleMs: number;

  constructor(
    private readonly queries: DashboardSource,
    private readonly gateway: string | null = null,
  ) {
    this.settleMs = queries.settleMs ?? COMMIT_GRACE_MS;
  }

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
    const gateways = new Map<string, GatewayTotals>();
    for (let hour = currentHour - (HOURS_SHOWN - 1) * HOUR_MS; hour <= currentHour; hour += HOUR_MS) {
      const c = await this.hourCounts(hour, now);
      hourly.push({ hour: sqliteTime(new Date(hour)).slice(0, 16), allowed: c.allowed, blocked: c.blocked });
      c.risk.forEach((n, i) => (risk[i]! += n));
      const d = await this.hourDetail(hour, now);
      for (const row of d.causes) {
        for (const label of rowCauseLabels(row.causes)) causes.set(label, (causes.get(label) ?? 0) + row.n);
      }
      for (const g of d.groups) {
        const key = JSON.stringify([g.customer_id, g.model]);
        const acc = groups.get(key) ?? { customer: g.customer_id, model: g.model, requests: 0, blocked: 0, riskSum: 0, tokens: null };
        acc.requests += g.requests;
        acc.blocked += g.blocked;
        acc.riskSum += g.risk_sum;
        groups.set(key, acc);
        if (g.gateway_id !== undefined) {
          const gw = gatewayTotals(gateways, g.gateway_id);
          gw.requests += g.requests;
          gw.blocked += g.blocked;
        }
      }
      for (const t of d.tokens) {
        const acc = groups.get(JSON.stringify([t.customer_id, t.model]));
        if (acc) acc.tokens = (acc.tokens ?? 0) + t.tokens;
        if (t.gateway_id !== undefined) {
          const gw = gatewayTotals(gateways, t.gateway_id);
          gw.tokens = (gw.tokens ?? 0) + t.tokens;
        }
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
      changes: await this.changes(),
      // Only in fleet mode, so a single gateway's summary keeps exactly its fields.
      ...(this.queries.fleet ? { gateway: this.gateway, gateways: [...gateways.values()].sort((a, b) => (a.gateway < b.gateway ? -1 : a.gateway > b.gateway ? 1 : 0)) } : {}),
    };
  }

  /** Read on every build: there are few events, and an admin checks here first for what just changed. */
  private async changes(): Promise<Summary['changes']> {
    await nextTurn();
    return (await this.queries.changes(CHANGES_SHOWN, this.gateway)).map((e) => ({
      created_at: e.created_at,
      kind: e.kind,
      actor: e.actor,
      summary: changeSummary(e.kind, e.detail),
      ...(e.gateway_id === undefined ? {} : { gateway: e.gateway_id }),
    }));
  }

  private hourCounts(hour: number, now: Date): Promise<HourCounts> {
    return this.cached(this.counts, hour, now, async () => {
      await nextTurn();
      return this.queries.hourCounts(sqliteTime(new Date(hour)), sqliteTime(new Date(hour + HOUR_MS)), this.gateway);
    });
  }

  private hourDetail(hour: number, now: Date): Promise<HourDetail> {
    return this.cached(this.details, hour, now, async () => {
      const from = sqliteTime(new Date(hour));
      const to = sqliteTime(new Date(hour + HOUR_MS));
      await nextTurn();
      const groups = await this.queries.groups(from, to, this.gateway);
      const causes = await this.queries.blockedCauses(from, to, this.gateway);
      const tokens: TokenRow[] = [];
      const slice = HOUR_MS / TOKEN_SLICES;
      for (let start = hour; start < hour + HOUR_MS; start += slice) {
        await nextTurn();
        tokens.push(...(await this.queries.tokens(sqliteTime(new Date(start)), sqliteTime(new Date(start + slice)), this.gateway)));
      }
      return { groups, causes, tokens };
    });
  }

  /** Each statement runs in its own event-loop turn, after the requests that queued meanwhile. */
  private async cached<T>(cache: Map<string, Cached<T>>, hour: number, now: Date, read: () => Promise<T>): Promise<T> {
    const key = sqliteTime(new Date(hour));
    const hit = cache.get(key);
    if (hit && hit.until > now.getTime()) return hit.value;
    const value = await read();
    const closed = hour + HOUR_MS + this.settleMs <= now.getTime();
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

function gatewayTotals(totals: Map<string, GatewayTotals>, gateway: string): GatewayTotals {
  let acc = totals.get(gateway);
  if (!acc) totals.set(gateway, (acc = { gateway, requests: 0, blocked: 0, tokens: null }));
  return acc;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
