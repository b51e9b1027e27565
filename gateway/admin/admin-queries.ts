import type Database from 'better-sqlite3';
import { openDatabase, type Db } from '../store/connection.js';
import type { DashboardSource } from './dashboard-source.js';

/** Risk histogram buckets: [0,10), [10,20) … [90,100]. */
export const RISK_BUCKETS = 10;

export interface HourCounts {
  readonly allowed: number;
  readonly blocked: number;
  /** Requests per risk bucket, RISK_BUCKETS long. */
  readonly risk: readonly number[];
}

export interface GroupRow {
  /** Central tables only (fleet mode): the gateway that decided. */
  readonly gateway_id?: string;
  readonly customer_id: string;
  readonly model: string | null;
  readonly requests: number;
  readonly blocked: number;
  readonly risk_sum: number;
}

export interface TokenRow {
  /** Central tables only (fleet mode). */
  readonly gateway_id?: string;
  readonly customer_id: string;
  readonly model: string | null;
  readonly tokens: number;
}

/** Blocked decisions of one hour with the same `causes` JSON (NULL on rows from before causes were recorded). */
export interface CauseRow {
  readonly causes: string | null;
  readonly n: number;
}

/** One row of the control log, without its chain columns. */
export interface ChangeRow {
  /** Central tables only (fleet mode): the gateway whose control log holds it, or '@fleet' for key changes made with the CLI. */
  readonly gateway_id?: string;
  readonly created_at: string;
  readonly kind: string;
  readonly actor: string;
  /** JSON; summarised for the page, never shown whole. */
  readonly detail: string;
}

export interface DecisionListRow {
  readonly id: string;
  readonly created_at: string;
  readonly customer_id: string;
  readonly api_key_id: string;
  readonly model: string | null;
  readonly operation: string;
  readonly risk_score: number;
  readonly allowed: number;
  readonly reason: string;
  readonly status: number | null;
  readonly total_tokens: number | null;
  /** Central tables only (fleet mode). */
  readonly gateway_id?: string;
}

/**
 * The dashboard's only access to the audit database: its own read-only
 * connection (never the proxy's writer), and statements that each read one
 * time range through an index. Callers keep ranges to an hour, so no single
 * statement holds the event loop for long even on a very large table.
 * The file holds this gateway's rows only, so the dashboard's gateway filter
 * never reaches it (the routes refuse it without fleet mode).
 */
export class AdminQueries implements DashboardSource {
  readonly fleet = false;
  private readonly db: Db;
  private readonly counts: Database.Statement<[string, string], { allowed: number; bucket: number; n: number }>;
  private readonly groupsStmt: Database.Statement<[string, string], GroupRow>;
  private readonly tokensStmt: Database.Statement<[string, string], TokenRow>;
  private readonly causesStmt: Database.Statement<[string, string], CauseRow>;
  private readonly latestStmt: Database.Statement<[number], DecisionListRow>;
  private readonly changesStmt: Database.Statement<[number], ChangeRow>;

  constructor(file: string) {
    this.db = openDatabase(file, { synchronous: 'NORMAL', readonly: true });
    this.counts = this.db.prepare(
      `SELECT allowed, min(CAST(risk_score / 10 AS INTEGER), ${RISK_BUCKETS - 1}) AS bucket, count(*) AS n
         FROM usagelog WHERE created_at >= ? AND created_at < ? GROUP BY allowed, bucket`,
    );
    this.groupsStmt = this.db.prepare(
      `SELECT customer_id, model, count(*) AS requests, sum(allowed = 0) AS blocked, sum(risk_score) AS risk_sum
         FROM usagelog WHERE created_at >= ? AND created_at < ? GROUP BY customer_id, model`,
    );
    this.tokensStmt = this.db.prepare(
      `SELECT u.customer_id, u.model, sum(o.total_tokens) AS tokens
         FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id
        WHERE u.created_at >= ? AND u.created_at < ? AND o.total_tokens IS NOT NULL
        GROUP BY u.customer_id, u.model`,
    );
    this.causesStmt = this.db.prepare(
      `SELECT causes, count(*) AS n FROM usagelog WHERE allowed = 0 AND created_at >= ? AND created_at < ? GROUP BY causes`,
    );
    this.latestStmt = this.db.prepare(
      `SELECT u.id, u.created_at, u.customer_id, u.api_key_id, u.model, u.operation, u.risk_score, u.allowed, u.reason,
              o.status, o.total_tokens
         FROM (SELECT * FROM usagelog ORDER BY created_at DESC LIMIT ?) u
         LEFT JOIN usagelog_outcome o ON o.log_id = u.id
        ORDER BY u.created_at DESC`,
    );
    // Rowid order is commit order: created_at is stamped before the commit and may tie.
    this.changesStmt = this.db.prepare('SELECT created_at, kind, actor, detail FROM audit_event ORDER BY rowid DESC LIMIT ?');
  }

  /** Allowed and blocked requests and the risk histogram of [from, to). */
  hourCounts(from: string, to: string): HourCounts {
    let allowed = 0;
    let blocked = 0;
    const risk = new Array<number>(RISK_BUCKETS).fill(0);
    for (const row of this.counts.iterate(from, to)) {
      if (row.allowed) allowed += row.n;
      else blocked += row.n;
      const bucket = Math.max(0, Math.min(RISK_BUCKETS - 1, row.bucket));
      risk[bucket]! += row.n;
    }
    return { allowed, blocked, risk };
  }

  groups(from: string, to: string): GroupRow[] {
    return this.groupsStmt.all(from, to);
  }

  tokens(from: string, to: string): TokenRow[] {
    return this.tokensStmt.all(from, to);
  }

  blockedCauses(from: string, to: string): CauseRow[] {
    return this.causesStmt.all(from, to);
  }

  latest(limit: number): DecisionListRow[] {
    return this.latestStmt.all(limit);
  }

  /** The newest control events first. */
  changes(limit: number): ChangeRow[] {
    return this.changesStmt.all(limit);
  }

  /** The plan SQLite chose for each statement, for the benchmark's report. */
  plans(): Record<string, string> {
    const explain = (sql: string) =>
      (this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all('', '') as { detail: string }[]).map((r) => r.detail).join(' | ');
    return {
      hourCounts: explain(this.counts.source),
      groups: explain(this.groupsStmt.source),
      tokens: explain(this.tokensStmt.source),
      blockedCauses: explain(this.causesStmt.source),
    };
  }

  close(): void {
    this.db.close();
  }
}
