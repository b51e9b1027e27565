import type { ChangeRow, CauseRow, DecisionListRow, GroupRow, HourCounts, TokenRow } from './admin-queries.js';

/** A statement's answer: the local file answers synchronously, PostgreSQL with a promise; the dashboard awaits both. */
export type Answer<T> = T | Promise<T>;

/**
 * What the dashboard reads, one time range or one short list per call.
 * Times are the audit log's own text, 'YYYY-MM-DD HH:MM:SS.SSS' in UTC, so
 * cache keys and ranges are the same in both modes. `gateway` narrows to one
 * gateway's rows; null reads them all. Two implementations:
 * - AdminQueries: the local SQLite file (single-node mode), which holds one
 *   gateway's rows only, so it is never given a gateway (the routes refuse
 *   the filter without fleet mode) and its rows carry no gateway_id;
 * - CentralDashboard (fleet/central-dashboard.ts): the central tables in
 *   PostgreSQL, every gateway's shipped rows, each carrying its gateway_id.
 */
export interface DashboardSource {
  /** Rows carry gateway_id and the gateway filter applies: the central tables. */
  readonly fleet: boolean;
  /**
   * How long after an hour ends rows may still arrive for it, so it is not
   * cached as finished too early; DashboardData's own grace when absent.
   */
  readonly settleMs?: number;
  hourCounts(from: string, to: string, gateway: string | null): Answer<HourCounts>;
  groups(from: string, to: string, gateway: string | null): Answer<GroupRow[]>;
  tokens(from: string, to: string, gateway: string | null): Answer<TokenRow[]>;
  blockedCauses(from: string, to: string, gateway: string | null): Answer<CauseRow[]>;
  /** The newest decisions first, with their outcome's status and tokens; never the metadata or any request content. */
  latest(limit: number, gateway: string | null): Answer<DecisionListRow[]>;
  /** The newest control events first. */
  changes(limit: number, gateway: string | null): Answer<ChangeRow[]>;
}

/** One gateway of the fleet, for the dashboard's gateway select. */
export interface FleetGatewayRow {
  readonly gateway: string;
  /** When its last batch reached the central tables: the dashboard shows its rows up to then. */
  readonly shipped_at: string;
}

/** The central tables: the rows of every gateway, and the list of gateways to filter by. */
export interface FleetDashboardSource extends DashboardSource {
  readonly fleet: true;
  /** Every gateway id that has shipped, in order. */
  gateways(): Promise<FleetGatewayRow[]>;
}

/**
 * The source cannot be read (the fleet database is down or refused a
 * statement). The message is safe to log: it never carries the URL.
 */
export class DashboardUnavailable extends Error {
  override readonly name = 'DashboardUnavailable';
}
