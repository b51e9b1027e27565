import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { NO_METADATA, toMetadata } from '../facts/governance-metadata.js';
import { checkedModel } from '../facts/model-name.js';
import { parseStrictJson } from '../facts/strict-json.js';
import { admit, type Question, type QuestionReader } from './admit.js';
import type { GatewayContext } from './context.js';
import { NO_REQUEST_FACTS } from './govern.js';
import { observeRequest } from './observe-request.js';
import { readBody } from './read-body.js';
import { responseAnswer } from './refuse.js';
import { sendJson } from './respond.js';

/** The operation recorded for a check whose question could not be read. */
const UNREADABLE_CHECK = 'check';

/** Asks the policy about a request the client has not sent: decides and records, forwards nothing. */
export async function handleCheck(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const started = performance.now();
  const judged = await admit(ctx, { kind: 'check', req, requestId, started, answer: responseAnswer(res), operation: UNREADABLE_CHECK, read: checkReader(ctx) });
  if (!judged) return;
  const { decision, headers, logId } = judged.governed;
  sendJson(res, 200, { allowed: decision.allowed, risk_score: decision.riskScore, reason: decision.reason, rules: decision.rules, log_id: logId }, headers);
  observeRequest(ctx, res.statusCode, {
    requestId, key: judged.key, operation: judged.question.operation, model: judged.question.model, started, decision: decision.allowed ? 'allow' : 'block',
  });
}

/** `{"model","operation","metadata"}`, plus the optional request facts `max_tokens` and `stream`. */
function checkReader(ctx: GatewayContext): QuestionReader {
  return async (req, known) => {
    const body = await readBody(req, ctx.config.server.maxBodyBytes, 'server.max_body_bytes');
    known.bodyBytes = body.length;
    return parseQuestion(body);
  };
}

function parseQuestion(body: Buffer): Question {
  const q = parseStrictJson(body);
  const operation = q.operation;
  if (typeof operation !== 'string' || operation === '' || operation.length > 256) {
    throw new GatewayError('invalid_request', 'operation must be a string of 1 to 256 characters', { param: 'operation' });
  }
  if (q.max_tokens !== undefined && (typeof q.max_tokens !== 'number' || !Number.isFinite(q.max_tokens))) {
    throw new GatewayError('invalid_request', 'max_tokens must be a number', { param: 'max_tokens' });
  }
  if (q.stream !== undefined && typeof q.stream !== 'boolean') throw new GatewayError('invalid_request', 'stream must be a boolean', { param: 'stream' });
  return {
    operation,
    model: checkedModel(q.model, 'model'),
    metadata: q.metadata === undefined ? NO_METADATA : toMetadata(q.metadata, 'metadata'),
    request: { ...NO_REQUEST_FACTS, max_tokens: (q.max_tokens as number | undefined) ?? null, stream: q.stream === true },
    reading: null,
    mintsCredential: false,
  };
}
