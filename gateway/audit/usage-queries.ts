import type { Db } from '../store/connection.js';

/** Requests, refusals and provider-reported tokens of one customer and model. */
export interface UsageRow {
  readonly customer: string;
  readonly model: string | null;
  readonly requests: number;
  readonly blocked: number;
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

/**
 * `govgate usage` over the local trail, per customer and model since `cutoff`
 * (SQLite time text). /v1/check questions are not requests and are left out.
 */
export function usageReport(db: Db, cutoff: string, customer: string | null): UsageRow[] {
  return db.prepare(
    `SELECT u.customer_id AS customer, u.model AS model, COUNT(*) AS requests, SUM(u.allowed = 0) AS blocked,
            COALESCE(SUM(o.prompt_tokens), 0) AS prompt_tokens, COALESCE(SUM(o.completion_tokens), 0) AS completion_tokens,
            COALESCE(SUM(o.total_tokens), 0) AS total_tokens
       FROM usagelog u LEFT JOIN usagelog_outcome o ON o.log_id = u.id
      WHERE u.created_at >= @cutoff AND (@customer IS NULL OR u.customer_id = @customer)
        AND json_extract(u.meta, '$.kind') IS NOT 'check'
      GROUP BY u.customer_id, u.model
      ORDER BY u.customer_id, u.model`,
  ).all({ cutoff, customer }) as UsageRow[];
}

/** A count per customer, key and period (`YYYY-MM-DD HH:MM` or `YYYY-MM-DD`). */
export interface PeriodCount {
  readonly customer_id: string;
  readonly api_key_id: string;
  readonly period: string;
  readonly n: number;
}

/** Requests per minute since `since`, but those a limit refused: refusals by a limit do not count against limits. */
export function requestsPerMinute(db: Db, since: string): PeriodCount[] {
  return db.prepare(
    `SELECT customer_id, api_key_id, substr(created_at, 1, 16) AS period, COUNT(*) AS n
       FROM usagelog
      WHERE created_at >= ? AND NOT (allowed = 0 AND reason LIKE 'limit%')
      GROUP BY customer_id, api_key_id, period`,
  ).all(since) as PeriodCount[];
}

/** Provider-reported tokens of allowed requests since `since`, per minute (`'minute'`) or per day (`'day'`). */
export function tokensPer(db: Db, period: 'minute' | 'day', since: string): PeriodCount[] {
  const width = period === 'minute' ? 16 : 10;
  return db.prepare(
    `SELECT u.customer_id, u.api_key_id, substr(u.created_at, 1, ${width}) AS period, SUM(o.total_tokens) AS n
       FROM usagelog u JOIN usagelog_outcome o ON o.log_id = u.id
      WHERE u.created_at >= ? AND u.allowed = 1 AND o.total_tokens IS NOT NULL
      GROUP BY u.customer_id, u.api_key_id, period`,
  ).all(since) as PeriodCount[];
}
