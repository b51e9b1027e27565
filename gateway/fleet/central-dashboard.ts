import type pg from 'pg';
import { RISK_BUCKETS, type CauseRow, type ChangeRow, type DecisionListRow, type GroupRow, type HourCounts, type TokenRow } from '../admin/admin-queries.js';
import { DashboardUnavailable, type FleetDashboardSource, type FleetGatewayRow } from '../admin/dashboard-source.js';
import type { FleetConfig } from '../config/fleet-config.js';
import { describeFleetError, FleetDatabase, fleetDatabaseUrl } from './fleet-database.js';

/**
 * Rows reach the central tables one shipper poll (300 ms) and one batch after
 * their local commit; a minute covers that with room to spare. Rows shipped
 * later (a backlog after an outage) show once the finished hour's cache
 * expires (dashboard-data.ts: within the hour).
 */
const SETTLE_MS = 60_000;
/** The dashboard's own pool: its aggregates never wait behind, nor hold up, shipping and the key poll. */
const POOL_SIZE = 2;

/**
 * The dashboard's times are the audit log's text ('YYYY-MM-DD HH:MM:SS.SSS',
 * UTC). Read as a timestamp and placed in UTC explicitly, so the session's
 * TimeZone never shifts a range; a constant expression, so the index is used.
 */
const FROM = `($1::timestamp AT TIME ZONE 'UTC')`;
const TO = `($2::timestamp AT TIME ZONE 'UTC')`;
/** The local text of a central time, as docs/fleet.md rebuilds it for hashing. */
const TIME_TEXT = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')`;

/**
 * Each statement in two fixed texts, for the whole fleet and for one gateway
 * (its id the last parameter), rather than `($n IS NULL OR gateway_id = $n)`:
 * each text has one plan, and the one-gateway text can use the
 * `(gateway_id, created_at)` and primary-key indexes.
 *
 * Counts and sums are cast to float8 so pg returns numbers, not bigint text;
 * they are exact below 2^53. Every range statement reads one hour (or a
 * quarter of one) through a created_at index, never the whole table; the
 * one-gateway texts through (gateway_id, created_at). Nothing selects `meta`
 * or any column that could hold request content.
 */
/**
 * The outcome of decision `u`: the same gateway's (log ids are unique per
 * file only), one at most (log_id is unique in each file). The LIMIT keeps
 * PostgreSQL from flattening the subquery into a join it may run as a hash
 * join over the whole outcome table when its statistics are thin: each
 * decision is one lookup in usagelog_outcome_log_id, as in the local plan.
 */
const OUTCOME = (columns: string) => `SELECT ${columns} FROM usagelog_outcome WHERE log_id = u.id AND gateway_id = u.gateway_id LIMIT 1`;

function scoped(sql: (oneGateway: (column: string, param: string) => string) => string): { all: string; one: string } {
  return { all: sql(() => ''), one: sql((column, param) => `AND ${column} = ${param}`) };
}

const STATEMENTS = {
  hourCounts: scoped((gw) => `
    SELECT allowed::int AS allowed, LEAST(trunc(risk_score / 10)::int, ${RISK_BUCKETS - 1}) AS bucket, count(*)::float8 AS n
      FROM usagelog WHERE created_at >= ${FROM} AND created_at < ${TO} ${gw('gateway_id', '$3')}
     GROUP BY 1, 2`),
  groups: scoped((gw) => `
    SELECT gateway_id, customer_id, model, count(*)::float8 AS requests, (count(*) FILTER (WHERE NOT allowed))::float8 AS blocked,
           sum(risk_score) AS risk_sum
      FROM usagelog WHERE created_at >= ${FROM} AND created_at < ${TO} ${gw('gateway_id', '$3')}
     GROUP BY gateway_id, customer_id, model`),
  tokens: scoped((gw) => `
    SELECT u.gateway_id, u.customer_id, u.model, sum(o.total_tokens)::float8 AS tokens
      FROM usagelog u CROSS JOIN LATERAL (${OUTCOME('total_tokens')}) o
     WHERE u.created_at >= ${FROM} AND u.created_at < ${TO} AND o.total_tokens IS NOT NULL ${gw('u.gateway_id', '$3')}
     GROUP BY u.gateway_id, u.customer_id, u.model`),
  blockedCauses: scoped((gw) => `
    SELECT causes, count(*)::float8 AS n
      FROM usagelog WHERE NOT allowed AND created_at >= ${FROM} AND created_at < ${TO} ${gw('gateway_id', '$3')}
     GROUP BY causes`),
  // The limit is applied to usagelog alone (an index scan backwards), then the few rows are joined.
  latest: scoped((gw) => `
    SELECT u.id, ${TIME_TEXT('u.created_at')} AS created_at, u.customer_id, u.api_key_id, u.model, u.operation, u.risk_score,
           u.allowed::int AS allowed, u.reason, o.status, o.total_tokens::float8 AS total_tokens, u.gateway_id
      FROM (SELECT gateway_id, row_id, id, created_at, customer_id, api_key_id, model, operation, risk_score, allowed, reason
              FROM usagelog WHERE true ${gw('gateway_id', '$2')}
             ORDER BY created_at DESC LIMIT $1) u
      LEFT JOIN LATERAL (${OUTCOME('status, total_tokens')}) o ON true
     ORDER BY u.created_at DESC, u.gateway_id, u.row_id DESC`),
} as const;

/**
 * Control events: one gateway's in row_id order, its commit order, as the
 * local dashboard shows them (the primary key, backwards); the fleet's by
 * time (the created_at index), each gateway's ties in commit order. The
 * qualified audit_event.created_at sorts by the column, not the text alias.
 */
const CHANGES_ALL = `
  SELECT gateway_id, ${TIME_TEXT('created_at')} AS created_at, kind, actor, detail
    FROM audit_event ORDER BY audit_event.created_at DESC, gateway_id, row_id DESC LIMIT $1`;
const CHANGES_ONE = `
  SELECT gateway_id, ${TIME_TEXT('created_at')} AS created_at, kind, actor, detail
    FROM audit_event WHERE gateway_id = $2 ORDER BY row_id DESC LIMIT $1`;
/** One row per gateway id that ever shipped; heartbeat_at moves with each shipped batch (shipper.ts). */
const GATEWAYS = `SELECT gateway_id AS gateway, ${TIME_TEXT('heartbeat_at')} AS shipped_at FROM fleet_gateway ORDER BY gateway_id`;

/**
 * The dashboard over the central tables (fleet mode): every gateway's shipped
 * rows, or one gateway's, in the shapes the local queries return
 * (admin-queries.ts), each row with its gateway_id. It reads only; it sees
 * the fleet up to each gateway's last shipped row.
 */
export class CentralDashboard implements FleetDashboardSource {
  readonly fleet = true;
  readonly settleMs = SETTLE_MS;

  constructor(private readonly db: FleetDatabase) {}

  async hourCounts(from: string, to: string, gateway: string | null): Promise<HourCounts> {
    let allowed = 0;
    let blocked = 0;
    const risk = new Array<number>(RISK_BUCKETS).fill(0);
    for (const row of await this.ranged<{ allowed: number; bucket: number; n: number }>('hourCounts', from, to, gateway)) {
      if (row.allowed) allowed += row.n;
      else blocked += row.n;
      // A negative score is not a bucket; the local query clamps the same way.
      risk[Math.max(0, Math.min(RISK_BUCKETS - 1, row.bucket))]! += row.n;
    }
    return { allowed, blocked, risk };
  }

  groups(from: string, to: string, gateway: string | null): Promise<GroupRow[]> {
    return this.ranged<GroupRow>('groups', from, to, gateway);
  }

  tokens(from: string, to: string, gateway: string | null): Promise<TokenRow[]> {
    return this.ranged<TokenRow>('tokens', from, to, gateway);
  }

  blockedCauses(from: string, to: string, gateway: string | null): Promise<CauseRow[]> {
    return this.ranged<CauseRow>('blockedCauses', from, to, gateway);
  }

  latest(limit: number, gateway: string | null): Promise<DecisionListRow[]> {
    const s = STATEMENTS.latest;
    return gateway === null ? this.rows<DecisionListRow>(s.all, [limit]) : this.rows<DecisionListRow>(s.one, [limit, gateway]);
  }

  changes(limit: number, gateway: string | null): Promise<ChangeRow[]> {
    return gateway === null ? this.rows<ChangeRow>(CHANGES_ALL, [limit]) : this.rows<ChangeRow>(CHANGES_ONE, [limit, gateway]);
  }

  gateways(): Promise<FleetGatewayRow[]> {
    return this.rows<FleetGatewayRow>(GATEWAYS, []);
  }

  /**
   * PostgreSQL's plan for each statement, with sequential scans priced out
   * (`enable_seqscan = off`): a small test table is scanned whole whatever
   * the indexes, so only a plan that still reads a table whole shows that no
   * index serves the statement.
   */
  async plans(): Promise<Record<string, string>> {
    const sample: Record<string, { sql: string; values: unknown[] }> = {};
    const range = ['2026-01-01 00:00:00.000', '2026-01-01 01:00:00.000'];
    for (const [name, s] of Object.entries(STATEMENTS)) {
      const head = name === 'latest' ? [100] : range;
      sample[`${name}.all`] = { sql: s.all, values: head };
      sample[`${name}.one`] = { sql: s.one, values: [...head, 'gw-1'] };
    }
    sample['changes.all'] = { sql: CHANGES_ALL, values: [20] };
    sample['changes.one'] = { sql: CHANGES_ONE, values: [20, 'gw-1'] };
    return this.db.transaction(async (client: pg.PoolClient) => {
      await client.query('SET LOCAL enable_seqscan = off');
      const plans: Record<string, string> = {};
      for (const [name, { sql, values }] of Object.entries(sample)) {
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, values);
        plans[name] = rows.map((r) => r['QUERY PLAN']).join('\n');
      }
      return plans;
    });
  }

  close(): Promise<void> {
    return this.db.close();
  }

  private ranged<R extends pg.QueryResultRow>(name: Exclude<keyof typeof STATEMENTS, 'latest'>, from: string, to: string, gateway: string | null): Promise<R[]> {
    const s = STATEMENTS[name];
    return gateway === null ? this.rows<R>(s.all, [from, to]) : this.rows<R>(s.one, [from, to, gateway]);
  }

  /** Any failure is the fleet database's: the dashboard answers 503 rather than show a partial or a local view. */
  private async rows<R extends pg.QueryResultRow>(sql: string, values: readonly unknown[]): Promise<R[]> {
    try {
      return (await this.db.query<R>(sql, values)).rows;
    } catch (err) {
      throw new DashboardUnavailable(`the fleet database failed: ${describeFleetError(err)}`, { cause: err });
    }
  }
}

/**
 * The dashboard's connection to the fleet database: a pool of its own, opened
 * lazily by the first query. The URL was checked when the gateway connected
 * its fleet (fleet-gateway.ts), so this cannot fail on it.
 */
export function openCentralDashboard(fleet: FleetConfig, configFile: string, env: NodeJS.ProcessEnv): CentralDashboard {
  const db = new FleetDatabase(fleetDatabaseUrl(fleet, configFile, env), {
    applicationName: `govgate ${fleet.gatewayId} dashboard`,
    maxConnections: POOL_SIZE,
    // A failed query answers 503 and says why; an idle connection cut by an outage has nothing to add.
    onIdleError: () => {},
  });
  return new CentralDashboard(db);
}
