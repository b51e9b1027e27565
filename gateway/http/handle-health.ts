import type { ServerResponse } from 'node:http';
import type { GatewayContext } from './context.js';
import { sendJson } from './respond.js';

/** `GET /healthz`: the process is up and its event loop turns. */
export function handleHealth(res: ServerResponse): void {
  sendJson(res, 200, { status: 'ok' });
}

/**
 * `GET /readyz`: 200 only when the audit database takes writes (a write probe,
 * cached for a second: audit-health.ts), so load
 * balancers route around a gateway that would refuse with 503. A policy is
 * always in force: the gateway does not start without a valid one, and an
 * invalid edit keeps the last good one; its hash is reported.
 */
export function handleReady(ctx: GatewayContext, res: ServerResponse): void {
  const audit = ctx.auditWritable();
  sendJson(res, audit ? 200 : 503, { status: audit ? 'ready' : 'unavailable', audit_writable: audit, policy_hash: ctx.policy.policy.hash });
}

/** `GET /metrics`: Prometheus text format. */
export async function handleMetrics(ctx: GatewayContext, res: ServerResponse): Promise<void> {
  const body = await ctx.metrics.registry.metrics();
  res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
