import type { OutgoingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { applicableLimits } from '../policy/applicable-limits.js';
import { StoreUnavailableError } from '../limits/counter-store.js';
import { isBudget, LIMIT_UNITS } from '../policy/limit-kinds.js';
import type { Reservation } from '../limits/limiter.js';
import type { Cause, CompiledPolicy, Decision } from '../policy/policy-types.js';
import type { RequestFacts } from '../policy/request-facts.js';
import type { GatewayContext } from './context.js';

/** What the limits made of a request the policy allowed. */
export interface LimitOutcome {
  readonly decision: Decision;
  /** The error that refuses the request, when a limit (or an unreachable store) does. */
  readonly refusal: GatewayError | null;
  /** Held until the response is over, then settled; null when nothing was reserved. */
  readonly reservation: Reservation | null;
  readonly headers: OutgoingHttpHeaders;
}

const NOTHING: OutgoingHttpHeaders = Object.freeze({});

/**
 * Runs after the policy allowed a request and before its audit row is written,
 * so the row records a refusal with the limit named in `reason`. In monitor
 * mode an exceeded limit is recorded as what would have blocked and nothing
 * is reserved.
 */
export async function admitLimits(ctx: GatewayContext, policy: CompiledPolicy, facts: RequestFacts, decision: Decision): Promise<LimitOutcome> {
  let admission;
  try {
    admission = await ctx.limiter.admit(applicableLimits(policy, facts.customer, facts.key), { maxTokens: facts.request.max_tokens, bodyBytes: facts.request.body_bytes });
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    const mode = ctx.config.limits.onStoreFailure;
    ctx.metrics.limitStoreFailure(mode);
    if (mode === 'allow') return { decision, refusal: null, reservation: null, headers: { 'x-governance-limits': 'unchecked' } };
    const refusal = new GatewayError('limits_unavailable', 'the rate limit store cannot be reached, so the request was not forwarded', { cause: err });
    return refuse(policy, decision, `limits_unavailable: ${refusal.message}`, { kind: 'refused', code: 'limits_unavailable' }, refusal, NOTHING);
  }
  if (admission.kind === 'unlimited') return { decision, refusal: null, reservation: null, headers: NOTHING };
  if (admission.kind === 'admitted') return { decision, refusal: null, reservation: admission.reservation, headers: admission.headers };

  const { refusal } = admission;
  if (policy.mode === 'enforce') ctx.metrics.limitRefused(refusal.limit.kind);
  const budget = isBudget(refusal.limit.kind);
  const error = new GatewayError(budget ? 'budget_exceeded' : 'rate_limit_exceeded', refusal.message, { type: LIMIT_UNITS[refusal.limit.kind].unit });
  return refuse(policy, decision, refusal.reason, { kind: 'limit', limit: refusal.limit.kind }, error, admission.headers);
}

function refuse(policy: CompiledPolicy, decision: Decision, reason: string, cause: Cause, error: GatewayError, headers: OutgoingHttpHeaders): LimitOutcome {
  if (policy.mode === 'monitor') {
    const would = decision.violates ? `${decision.reason}; ${reason}` : `monitor mode, would block: ${reason}`;
    return { decision: { ...decision, violates: true, reason: would, causes: [...decision.causes, cause] }, refusal: null, reservation: null, headers };
  }
  return { decision: { ...decision, allowed: false, violates: true, reason, causes: [cause] }, refusal: error, reservation: null, headers };
}
