import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { authenticate } from '../auth/authenticate.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { GatewayError } from '../errors/catalogue.js';
import { METADATA_HEADER, NO_METADATA, parseGovernanceMetadata, type Metadata } from '../facts/governance-metadata.js';
import { operationFromPath } from '../facts/operation.js';
import { describeBody, type BodyFacts } from '../facts/request-body.js';
import { sqliteTime } from '../audit/database.js';
import { upstreamRequestHeaders } from '../proxy/forwarded-headers.js';
import { forwardRequest, type ForwardErrorKind, type ForwardOutcome } from '../proxy/forward-request.js';
import { withUsageRequested } from '../proxy/stream-usage.js';
import type { TokenUsage } from '../proxy/usage-tap.js';
import type { OutcomeRow } from '../audit/audit-writer.js';
import type { GatewayContext } from './context.js';
import { govern, NO_REQUEST_FACTS, verdictOf, AUDIT_FAILURE_HEADERS, type GovernInput } from './govern.js';
import { readBody } from './read-body.js';
import { refuseUnread } from './refuse-unread.js';
import { observeRequest, round } from './observe-request.js';
import { refuseUnauthenticated, sendError } from './respond.js';

const EMPTY = Buffer.alloc(0);

/**
 * The governed request lifecycle for `/v1/*`:
 * authenticate → read body and derive facts → decide and record → forward → record outcome.
 */
export async function handleProxy(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, requestId: string, pathname: string, search: string): Promise<void> {
  const started = performance.now();

  let key: ApiKeyRecord;
  try {
    key = authenticate(req.headers, ctx.keys);
  } catch (err) {
    refuseUnauthenticated(ctx, res, err, requestId);
    return;
  }

  const operation = operationFromPath(pathname);
  let metadata: Metadata = NO_METADATA;
  let body: Buffer = EMPTY;
  let bodyFacts: BodyFacts;
  try {
    metadata = parseGovernanceMetadata(req.headers[METADATA_HEADER]);
    body = await readBody(req, ctx.config.server.maxBodyBytes);
    bodyFacts = describeBody(req.headers['content-type'], body);
  } catch (err) {
    const input: GovernInput = { requestId, kind: 'proxy', key, operation, model: null, metadata, request: { ...NO_REQUEST_FACTS, body_bytes: body.length } };
    await refuseUnread(ctx, res, input, err, started);
    return;
  }

  const model = bodyFacts.model ?? new URLSearchParams(search).get('model');
  let governed;
  try {
    governed = await govern(ctx, {
      requestId,
      kind: 'proxy',
      key,
      operation,
      model,
      metadata,
      request: {
        stream: bodyFacts.stream,
        max_tokens: bodyFacts.maxTokens,
        messages: bodyFacts.messages,
        tools: bodyFacts.tools,
        body_bytes: body.length,
      },
    });
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    sendError(res, err, AUDIT_FAILURE_HEADERS);
    ctx.reporter.serverError(err.code, err.status, requestId);
    observeRequest(ctx, res, { requestId, key, operation, model, started, error: err.code });
    return;
  }

  const { headers, logId, reservation } = governed;
  const verdict = verdictOf(governed, model);
  if (verdict.refusal) {
    sendError(res, verdict.refusal, headers);
    observeRequest(ctx, res, { requestId, key, operation, model, started, decision: 'block', error: verdict.refusal.code });
    return;
  }
  const { provider } = verdict;

  if (!ctx.providers.tryAcquire(provider)) {
    if (reservation) ctx.limiter.settle(reservation, 0);
    const busy = new GatewayError('overloaded', `provider ${provider.name} has too many requests in flight; retry shortly`);
    sendError(res, busy, { ...headers, 'retry-after': '1' });
    ctx.audit.recordOutcome(outcomeRow(logId, started, { status: busy.status, upstreamMs: null, usage: null, error: 'overloaded' }));
    observeRequest(ctx, res, { requestId, key, operation, model, started, decision: 'allow', provider: provider.name, error: 'overloaded' });
    return;
  }
  // The one change to the client's bytes: a token limit needs the usage of a stream the client did not ask it for.
  const usageBody = reservation !== null && reservation.tokenKeys.length > 0 && operation === 'chat.completions' && bodyFacts.stream
    ? withUsageRequested(body)
    : null;
  const overheadMs = performance.now() - started;
  let outcome;
  try {
    outcome = await forwardRequest(
      {
        provider,
        method: req.method as Dispatcher.HttpMethod,
        path: provider.basePath + pathname.slice(3) + search,
        headers: upstreamRequestHeaders(req.headers, provider.authorization, requestId),
        body: usageBody ?? (body.length > 0 ? body : null),
        ownHeaders: { ...headers, 'x-governance-overhead-ms': overheadMs.toFixed(3) },
        stripUsage: usageBody !== null,
      },
      res,
    );
  } finally {
    ctx.providers.release(provider);
  }
  if (reservation) ctx.limiter.settle(reservation, tokensUsed(outcome));
  if (outcome.answeredWith) {
    sendError(res, outcome.answeredWith, headers);
    ctx.reporter.serverError(outcome.answeredWith.code, outcome.answeredWith.status, requestId);
  } else if (outcome.status !== null && outcome.status >= 500) {
    ctx.reporter.upstreamError(provider.name, outcome.status, requestId);
  }
  ctx.audit.recordOutcome(outcomeRow(logId, started, {
    status: outcome.answeredWith?.status ?? outcome.status,
    upstreamMs: outcome.upstreamMs,
    usage: outcome.usage,
    error: outcome.error,
  }));
  observeRequest(ctx, res, {
    requestId, key, operation, model, started, decision: 'allow', provider: provider.name,
    overheadMs, upstreamMs: outcome.upstreamMs, error: outcome.error,
  });
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
