import { randomUUID } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { decisionRow, type DecisionKind } from '../audit/decision-row.js';
import type { DecisionRow } from '../audit/audit-writer.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { GatewayError } from '../errors/catalogue.js';
import { evaluate, unroutable } from '../policy/evaluate.js';
import type { Decision } from '../policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../policy/request-facts.js';
import type { Provider } from '../proxy/provider-router.js';
import type { Reservation } from '../limits/limiter.js';
import type { GatewayContext } from './context.js';
import { admitLimits } from './admit-limits.js';

export interface GovernInput {
  readonly requestId: string;
  readonly kind: DecisionKind;
  readonly key: ApiKeyRecord;
  readonly operation: string;
  readonly model: string | null;
  readonly metadata: Readonly<Record<string, MetadataValue>>;
  readonly request: RequestFacts['request'];
}

export interface Governed {
  readonly logId: string;
  readonly decision: Decision;
  /** Undefined when no provider serves the model; the decision then refuses. */
  readonly provider: Provider | undefined;
  /** The governance headers every governed response carries, and the rate limit headers where limits apply. */
  readonly headers: OutgoingHttpHeaders;
  /** Set when a limit, not the policy, refuses the request. */
  readonly limitRefusal: GatewayError | null;
  /** Tokens and a request held against the limits; settle it once the request is over. */
  readonly reservation: Reservation | null;
}

export const NO_REQUEST_FACTS: RequestFacts['request'] = Object.freeze({ stream: false, max_tokens: null, messages: null, tools: null, body_bytes: 0 });

/**
 * Decide and record: route the model to a provider, evaluate the policy in
 * force, hold the request against its limits (forwarded requests only), and
 * commit the audit row. Resolves only once the row is committed, or (with
 * `on_write_failure: allow`) once its failure has been counted; with `block`
 * an unwritable audit log refuses the request (fail closed).
 */
export async function govern(ctx: GatewayContext, input: GovernInput): Promise<Governed> {
  const provider = ctx.providers.forModel(input.model);
  const facts = factsOf(input, provider?.name ?? null);
  const policy = ctx.policy.policy;
  let decision: Decision = provider ? evaluate(policy, facts) : unroutable(input.model);
  let limitRefusal: GatewayError | null = null;
  let reservation: Reservation | null = null;
  let limitHeaders: OutgoingHttpHeaders = {};
  if (provider && decision.allowed && input.kind === 'proxy') {
    ({ decision, refusal: limitRefusal, reservation, headers: limitHeaders } = await admitLimits(ctx, policy, facts, decision));
  }
  const logId = randomUUID();
  let recorded: boolean;
  try {
    recorded = await commit(ctx, decisionRow(logId, input.requestId, input.kind, facts, decision));
  } catch (err) {
    if (reservation) ctx.limiter.settle(reservation, 0);
    throw err;
  }
  const headers: OutgoingHttpHeaders = {
    ...limitHeaders,
    'x-governance-decision': decision.allowed ? 'allow' : 'block',
    'x-governance-risk-score': String(decision.riskScore),
    'x-governance-log-id': logId,
  };
  if (!recorded) headers['x-governance-audit'] = 'unrecorded';
  return { logId, decision, provider, headers, limitRefusal, reservation };
}

/** The governance headers of a request refused before the policy ran: a block, with its row when one was written. */
export function refusalHeaders(logId: string | null): OutgoingHttpHeaders {
  return logId
    ? { 'x-governance-decision': 'block', 'x-governance-risk-score': '0', 'x-governance-log-id': logId }
    : { 'x-governance-decision': 'block', 'x-governance-risk-score': '0' };
}

/** A request refused because its row could not be written has no log id to show. */
export const AUDIT_FAILURE_HEADERS: OutgoingHttpHeaders = Object.freeze({ 'x-governance-decision': 'block' });

/** Where a governed request goes: to its provider, or back to the client with the error that refuses it. */
export type Verdict = { readonly refusal: null; readonly provider: Provider } | { readonly refusal: GatewayError };

export function verdictOf(governed: Governed, model: string | null): Verdict {
  if (!governed.provider) {
    return { refusal: new GatewayError('model_not_found', `The model \`${model}\` is not served by any provider of this gateway`, { param: 'model' }) };
  }
  if (!governed.decision.allowed && governed.limitRefusal) return { refusal: governed.limitRefusal };
  if (!governed.decision.allowed) {
    return { refusal: new GatewayError('policy_blocked', `Request blocked by governance policy: ${governed.decision.reason}`) };
  }
  return { refusal: null, provider: governed.provider };
}

/**
 * Records a request refused before the policy could run (malformed input, body
 * too large), so every authenticated request leaves exactly one row. Never
 * throws: the request is refused whatever happens to its row.
 */
export async function recordRefusal(ctx: GatewayContext, input: GovernInput, error: GatewayError): Promise<string | null> {
  const logId = randomUUID();
  const row = decisionRow(logId, input.requestId, input.kind, factsOf(input, null), { allowed: false, riskScore: 0, reason: `${error.code}: ${error.message}` });
  try {
    await ctx.audit.record(row);
    return logId;
  } catch {
    return null;
  }
}

async function commit(ctx: GatewayContext, row: DecisionRow): Promise<boolean> {
  try {
    await ctx.audit.record(row);
    return true;
  } catch (err) {
    if (ctx.config.audit.onWriteFailure === 'block') {
      throw new GatewayError('audit_unavailable', 'the audit log cannot be written, so the request was not forwarded', { cause: err });
    }
    ctx.reporter.message('request forwarded without an audit row', { code: 'audit_unavailable' });
    ctx.metrics.forwardedUnaudited();
    return false;
  }
}

function factsOf(input: GovernInput, provider: string | null): RequestFacts {
  return {
    customer: input.key.customer_id,
    key: input.key.id,
    model: input.model,
    operation: input.operation,
    provider,
    metadata: input.metadata,
    request: input.request,
  };
}
