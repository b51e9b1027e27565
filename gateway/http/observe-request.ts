import type { ApiKeyRecord } from '../auth/key-store.js';
import type { GatewayContext } from './context.js';

export interface RequestFields {
  requestId: string;
  key: ApiKeyRecord;
  operation: string;
  model: string | null;
  started: number;
  decision?: 'allow' | 'block';
  provider?: string;
  overheadMs?: number;
  upstreamMs?: number;
  error?: string | null;
}

/** One log line and one metrics sample per request: ids, names and timings, never content or secrets. */
export function observeRequest(ctx: GatewayContext, status: number, f: RequestFields): void {
  ctx.metrics.request({
    decision: f.decision ?? 'block',
    operation: f.operation,
    model: f.model,
    customer: f.key.customer_id,
    status,
    overheadMs: f.overheadMs,
    upstreamMs: f.upstreamMs,
    provider: f.provider,
    upstreamError: f.provider === undefined ? null : f.error ?? providerRefusal(status),
  });
  ctx.logger.info({
    req_id: f.requestId,
    customer: f.key.customer_id,
    key_id: f.key.id,
    model: f.model,
    operation: f.operation,
    decision: f.decision ?? 'block',
    provider: f.provider,
    status,
    duration_ms: round(performance.now() - f.started),
    overhead_ms: f.overheadMs === undefined ? undefined : round(f.overheadMs),
    upstream_ms: f.upstreamMs === undefined ? undefined : round(f.upstreamMs),
    error: f.error ?? undefined,
  }, 'request');
}

export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** A provider's own 429 or 5xx answer, counted beside transport failures so an outage or throttling shows in one metric. */
function providerRefusal(status: number): string | null {
  if (status === 429) return 'http_429';
  return status >= 500 ? 'http_5xx' : null;
}
