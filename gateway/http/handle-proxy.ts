import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { sqliteTime } from '../store/sqlite-time.js';
import type { OutcomeRow } from '../audit/audit-writer.js';
import { countLines } from '../facts/batch-lines.js';
import type { RequestReading } from '../facts/read-request.js';
import type { Operation } from '../facts/routes.js';
import { upstreamRequestHeaders } from '../proxy/forwarded-headers.js';
import { forwardRequest, type ForwardErrorKind, type ForwardOutcome } from '../proxy/forward-request.js';
import { withUsageRequested } from '../proxy/stream-usage.js';
import type { TokenUsage } from '../proxy/usage-tap.js';
import { admit, apiRequestReader, type Admitted } from './admit.js';
import type { GatewayContext } from './context.js';
import { observeRequest, round } from './observe-request.js';
import { responseAnswer } from './refuse.js';
import { sendError } from './respond.js';

/** Streams whose usage the gateway asks for when the client did not: the providers send it only on request. */
const USAGE_ON_REQUEST = new Set(['chat.completions', 'completions']);

/**
 * The governed request lifecycle for `/v1/*`: admit (authenticate → read →
 * decide and record) → forward → record the outcome → release the lease.
 */
export async function handleProxy(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, requestId: string, operation: Operation, pathname: string, search: string): Promise<void> {
  const started = performance.now();
  const admitted = await admit(ctx, {
    kind: 'proxy', req, requestId, started, answer: responseAnswer(res), operation: operation.name, read: apiRequestReader(ctx, operation, search),
  });
  if (!admitted) return;
  const { lease, governed, question } = admitted;
  const reading = question.reading!;
  const { provider } = lease;
  let outcome: ForwardOutcome | null = null;
  try {
    const usageBody = question.request.stream && USAGE_ON_REQUEST.has(question.operation) && reading.json ? withUsageRequested(reading.body, reading.json) : null;
    const overheadMs = performance.now() - started;
    const headers = upstreamRequestHeaders(req.headers, provider, requestId);
    if (reading.contentType) headers['content-type'] = reading.contentType;
    const body = usageBody ?? reading.body;
    outcome = await forwardRequest(
      {
        provider,
        method: req.method as Dispatcher.HttpMethod,
        path: provider.basePath + pathname.slice(3) + search,
        headers,
        body: body.length > 0 ? body : null,
        ownHeaders: { ...governed.headers, 'x-governance-overhead-ms': overheadMs.toFixed(3) },
        stripUsage: usageBody !== null,
        beforeEnd: reading.batchFile ? (json) => acceptBatchFile(ctx, admitted, reading, json) : undefined,
      },
      res,
    );
    if (outcome.answeredWith) {
      sendError(res, outcome.answeredWith, governed.headers);
      ctx.reporter.serverError(outcome.answeredWith.code, outcome.answeredWith.status, requestId);
    } else if (outcome.status !== null && outcome.status >= 500) {
      ctx.reporter.upstreamError(provider.name, outcome.status, requestId);
    }
    ctx.audit.recordOutcome(outcomeRow(governed.logId, started, {
      status: outcome.answeredWith?.status ?? outcome.status,
      upstreamMs: outcome.upstreamMs,
      usage: outcome.usage,
      error: outcome.error,
    }));
    observeRequest(ctx, res.statusCode, {
      requestId, key: admitted.key, operation: question.operation, model: question.model, started, decision: 'allow', provider: provider.name,
      overheadMs, upstreamMs: outcome.upstreamMs, error: outcome.error,
    });
  } finally {
    lease.release(outcome ? tokensUsed(outcome) : 0);
  }
}

/** An upload whose every line passed becomes a file a batch may run, once the provider has named it. */
function acceptBatchFile(ctx: GatewayContext, admitted: Admitted, reading: RequestReading, response: Readonly<Record<string, unknown>> | null): void {
  const fileId = response?.id;
  if (typeof fileId !== 'string') return;
  ctx.batchFiles.accept({ fileId, customer: admitted.key.customer_id, keyId: admitted.key.id, logId: admitted.governed.logId, lines: countLines(reading.batchFile!) });
}

/**
 * What a forwarded request costs its token limits: the usage the provider
 * reported; else, for a response broken off after it began (the provider was
 * generating, and bills), the reservation; else nothing (refused, failed, or an
 * endpoint that reports no tokens).
 */
function tokensUsed(outcome: ForwardOutcome): number | null {
  if (outcome.usage?.total_tokens != null) return outcome.usage.total_tokens;
  const brokenOff = outcome.error === 'client_abort' || outcome.error === 'upstream_reset' || outcome.error === 'upstream_idle_timeout';
  return brokenOff && outcome.status !== null && outcome.status < 400 ? null : 0;
}

function outcomeRow(
  logId: string,
  started: number,
  o: { status: number | null; upstreamMs: number | null; usage: TokenUsage | null; error: ForwardErrorKind | null },
): OutcomeRow {
  return {
    log_id: logId,
    status: o.status,
    duration_ms: round(performance.now() - started),
    upstream_ms: o.upstreamMs === null ? null : round(o.upstreamMs),
    prompt_tokens: o.usage?.prompt_tokens ?? null,
    completion_tokens: o.usage?.completion_tokens ?? null,
    total_tokens: o.usage?.total_tokens ?? null,
    error: o.error,
    created_at: sqliteTime(),
  };
}
