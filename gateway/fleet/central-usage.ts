import type { UsageRow } from '../audit/usage-queries.js';
import type { FleetDatabase } from './fleet-database.js';

/** A usage row of one gateway. */
export type FleetUsageRow = UsageRow & { readonly gateway: string };

export interface FleetUsageFilter {
  readonly since: Date;
  readonly customer?: string;
  readonly gateway?: string;
}

/**
 * `govgate usage` over the central tables: the local query (gateway/audit/usage-queries.ts)
 * per gateway. An outcome belongs to the decision of the same gateway; /v1/check
 * questions are not requests and are left out, as locally.
 */
export async function centralUsage(db: FleetDatabase, filter: FleetUsageFilter): Promise<FleetUsageRow[]> {
  const { rows } = await db.query<Record<keyof FleetUsageRow, string | null>>(
    `SELECT u.gateway_id AS gateway, u.customer_id AS customer, u.model AS model,
            count(*)::text AS requests, count(*) FILTER (WHERE NOT u.allowed)::text AS blocked,
            COALESCE(sum(o.prompt_tokens), 0)::text AS prompt_tokens, COALESCE(sum(o.completion_tokens), 0)::text AS completion_tokens,
            COALESCE(sum(o.total_tokens), 0)::text AS total_tokens
       FROM usagelog u LEFT JOIN usagelog_outcome o ON o.gateway_id = u.gateway_id AND o.log_id = u.id
      WHERE u.created_at >= $1 AND ($2::text IS NULL OR u.customer_id = $2) AND ($3::text IS NULL OR u.gateway_id = $3)
        AND (u.meta::jsonb ->> 'kind') IS DISTINCT FROM 'check'
      GROUP BY u.gateway_id, u.customer_id, u.model
      ORDER BY u.gateway_id, u.customer_id, u.model NULLS FIRST`,
    [filter.since, filter.customer ?? null, filter.gateway ?? null],
  );
  // Counts and sums are bigint, which pg returns as text; usage figures stay far below 2^53.
  return rows.map((r) => ({
    gateway: r.gateway ?? '',
    customer: r.customer ?? '',
    model: r.model,
    requests: Number(r.requests),
    blocked: Number(r.blocked),
    prompt_tokens: Number(r.prompt_tokens),
    completion_tokens: Number(r.completion_tokens),
    total_tokens: Number(r.total_tokens),
  }));
}
