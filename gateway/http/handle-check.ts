import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate } from '../auth/authenticate.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { GatewayError } from '../errors/catalogue.js';
import { NO_METADATA, toMetadata, type Metadata } from '../facts/governance-metadata.js';
import type { GatewayContext } from './context.js';
import { govern, NO_REQUEST_FACTS, AUDIT_FAILURE_HEADERS } from './govern.js';
import { readBody } from './read-body.js';
import { refuseUnread } from './refuse-unread.js';
import { observeRequest } from './observe-request.js';
import { refuseUnauthenticated, sendError, sendJson } from './respond.js';

/** The operation recorded for a check whose question could not be read. */
const UNREADABLE_CHECK = 'check';

/** Asks the policy about a request the client has not sent: decides and records, forwards nothing. */
export async function handleCheck(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const started = performance.now();
  let key: ApiKeyRecord;
  try {
    key = authenticate(req.headers, ctx.keys);
  } catch (err) {
    refuseUnauthenticated(ctx, res, err, requestId);
    return;
  }

  let question: CheckQuestion;
  let bodyBytes = 0;
  try {
    const body = await readBody(req, ctx.config.server.maxBodyBytes);
    bodyBytes = body.length;
    question = parseQuestion(body);
  } catch (err) {
    const input = { requestId, kind: 'check' as const, key, operation: UNREADABLE_CHECK, model: null, metadata: NO_METADATA, request: { ...NO_REQUEST_FACTS, body_bytes: bodyBytes } };
    await refuseUnread(ctx, res, input, err, started);
    return;
  }

  try {
    const { decision, headers, logId } = await govern(ctx, {
      requestId,
      kind: 'check',
      key,
      operation: question.operation,
      model: question.model,
      metadata: question.metadata,
      request: { ...NO_REQUEST_FACTS, max_tokens: question.maxTokens, stream: question.stream },
    });
    sendJson(res, 200, { allowed: decision.allowed, risk_score: decision.riskScore, reason: decision.reason, rules: decision.rules, log_id: logId }, headers);
    observeRequest(ctx, res, { requestId, key, operation: question.operation, model: question.model, started, decision: decision.allowed ? 'allow' : 'block' });
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    sendError(res, err, AUDIT_FAILURE_HEADERS);
    ctx.reporter.serverError(err.code, err.status, requestId);
    observeRequest(ctx, res, { requestId, key, operation: question.operation, model: question.model, started, error: err.code });
  }
}

interface CheckQuestion {
  readonly model: string;
  readonly operation: string;
  readonly metadata: Metadata;
  readonly maxTokens: number | null;
  readonly stream: boolean;
}

/** `{"model","operation","metadata"}`, plus the optional request facts `max_tokens` and `stream`. */
function parseQuestion(body: Buffer): CheckQuestion {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatewayError('invalid_request', 'request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new GatewayError('invalid_request', 'request body must be a JSON object');
  const q = parsed as Record<string, unknown>;
  const text = (name: 'model' | 'operation') => {
    const value = q[name];
    if (typeof value !== 'string' || value === '' || value.length > 256) throw new GatewayError('invalid_request', `${name} must be a string of 1 to 256 characters`, { param: name });
    return value;
  };
  if (q.max_tokens !== undefined && (typeof q.max_tokens !== 'number' || !Number.isFinite(q.max_tokens))) {
    throw new GatewayError('invalid_request', 'max_tokens must be a number', { param: 'max_tokens' });
  }
  if (q.stream !== undefined && typeof q.stream !== 'boolean') throw new GatewayError('invalid_request', 'stream must be a boolean', { param: 'stream' });
  return {
    model: text('model'),
    operation: text('operation'),
    metadata: q.metadata === undefined ? NO_METADATA : toMetadata(q.metadata, 'metadata'),
    maxTokens: (q.max_tokens as number | undefined) ?? null,
    stream: q.stream === true,
  };
}
