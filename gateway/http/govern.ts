import type { OutgoingHttpHeaders } from 'node:http';
import { v7 as uuidv7 } from 'uuid';
import { decisionRow, type DecisionKind } from '../audit/decision-row.js';
import type { DecisionRow } from '../audit/audit-writer.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { GatewayError } from '../errors/catalogue.js';
import { batchLines } from '../facts/batch-lines.js';
import { applicableLimits } from '../policy/applicable-limits.js';
import { evaluate, unroutable } from '../policy/evaluate.js';
import type { Cause, CompiledPolicy, Decision } from '../policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../policy/request-facts.js';
import { Lease } from '../proxy/lease.js';
import type { Provider } from '../proxy/provider-router.js';
import type { GatewayContext } from './context.js';
import { admitLimits } from './admit-limits.js';

export interface GovernInput {
  readonly requestId: string;
  readonly kind: DecisionKind;
  readonly method: string;
  readonly key: ApiKeyRecord;
  readonly operation: string;
  readonly model: string | null;
  readonly metadata: Readonly<Record<string, MetadataValue>>;
  readonly request: RequestFacts['request'];
  /** The operation hands out a credential that reaches the provider past the gateway. */
  readonly mintsCredential?: boolean;
  /** A batch input file being uploaded: every line is judged as the request it will become. */
  readonly batchFile?: Buffer | null;
  /** The input file of a batch being created: it must have passed the line check. */
  readonly batchInputFile?: string | null;
}

/** What becomes of a governed request: forwarded under its lease, refused with an error, or (a check) answered with the decision. */
export type Verdict =
  | { readonly kind: 'forward'; readonly lease: Lease }
  | { readonly kind: 'refuse'; readonly error: GatewayError }
  | { readonly kind: 'answer' };

export interface Governed {
  /** The decision row's id: what the client sees in `x-governance-log-id`, and what its outcome row points at. */
  readonly logId: string;
  readonly decision: Decision;
  /** The governance headers every governed response carries, and the rate limit headers where limits apply. */
  readonly headers: OutgoingHttpHeaders;
  readonly verdict: Verdict;
}

const ANSWER: Verdict = Object.freeze({ kind: 'answer' });

export const NO_REQUEST_FACTS: RequestFacts['request'] = Object.freeze({ stream: false, max_tokens: null, messages: null, tools: null, body_bytes: 0 });

/**
 * Decide and record: route the model to a provider, evaluate the policy in
 * force, and for a request that would be forwarded hold it against its limits
 * and take a place at its provider; then commit the audit row. The row says
 * what happened: a request refused for any of these reasons is recorded as
 * refused. Resolves only once the row is committed (or, with
 * `on_write_failure: allow`, once its failure has been counted); with `block`
 * an unwritable audit log refuses the request (fail closed).
 */
export async function govern(ctx: GatewayContext, input: GovernInput): Promise<Governed> {
  const provider = ctx.providers.forModel(input.model);
  const facts = factsOf(input, provider?.name ?? null);
  const policy = ctx.policy.policy;
  const forwards = input.kind !== 'check';
  let decision: Decision = provider ? judge(ctx, policy, facts, input, provider) : unroutable(input.model);
  let refusal: GatewayError | null = provider ? null : modelNotFound(input.model);
  let lease: Lease | null = null;
  let headers: OutgoingHttpHeaders = {};
  if (provider && decision.allowed && forwards) {
    const limited = await admitLimits(ctx, policy, facts, decision);
    ({ decision, headers } = limited);
    refusal = limited.refusal;
    if (!refusal) {
      const holdsSlot = input.kind === 'proxy';
      if (holdsSlot && !ctx.providers.tryAcquire(provider)) {
        if (limited.reservation) ctx.limiter.settle(limited.reservation, 0);
        refusal = new GatewayError('overloaded', `provider ${provider.name} has too many requests in flight; retry shortly`);
        decision = { ...decision, allowed: false, violates: true, reason: `overloaded: ${refusal.message}`, causes: [{ kind: 'refused', code: 'overloaded' }] };
        headers = { ...headers, 'retry-after': '1' };
      } else {
        lease = new Lease(ctx.providers, ctx.limiter, provider, holdsSlot, limited.reservation);
      }
    }
  } else {
    // Not forwarded, but still a request the key made: it counts, or refusals and checks would be free to repeat.
    ctx.limiter.charge(applicableLimits(policy, facts.customer, facts.key));
  }
  // Every way past the checks above ends in a lease, a refusal, or a decision that refuses.
  const verdict: Verdict = !forwards
    ? ANSWER
    : lease
      ? { kind: 'forward', lease }
      : { kind: 'refuse', error: refusal ?? new GatewayError('policy_blocked', `Request blocked by governance policy: ${decision.reason}`) };
  const logId = uuidv7();
  let recorded: boolean;
  try {
    recorded = await commit(ctx, decisionRow(logId, input.requestId, input.kind, input.method, facts, decision, policy.hash));
  } catch (err) {
    lease?.release(0);
    throw err;
  }
  headers = {
    ...headers,
    'x-governance-decision': verdict.kind === 'forward' || (verdict.kind === 'answer' && decision.allowed) ? 'allow' : 'block',
    'x-governance-risk-score': String(decision.riskScore),
    'x-governance-log-id': logId,
  };
  if (!recorded) headers['x-governance-audit'] = 'unrecorded';
  return { logId, decision, headers, verdict };
}

/**
 * The policy's decision, and the gateway's own refusals that no policy can
 * lift: a credential that would bypass the gateway, a batch that would run a
 * request the policy refuses or a file that was never checked.
 */
function judge(ctx: GatewayContext, policy: CompiledPolicy, facts: RequestFacts, input: GovernInput, provider: Provider): Decision {
  const decision = evaluate(policy, facts);
  if (input.mintsCredential && !provider.config.ephemeralCredentials) {
    return hardRefusal(decision, `operation ${facts.operation} mints a credential that reaches provider ${provider.name} past the gateway; set ephemeral_credentials: true on the provider to allow it`, { kind: 'refused', code: 'mints_credential' });
  }
  if (input.batchFile) {
    for (const line of batchLines(input.batchFile)) {
      const lineProvider = ctx.providers.forModel(line.model);
      // The batch runs where the file goes; a line the gateway would send elsewhere would run somewhere it was not judged.
      if (lineProvider !== provider) return hardRefusal(decision, `batch input file line ${line.line}: model ${line.model} is not served by provider ${provider.name}, where the file goes`, { kind: 'refused', code: 'batch_line_elsewhere', line: line.line });
      const verdict = evaluate(policy, { ...facts, model: line.model, operation: line.operation, provider: lineProvider.name, request: line.request });
      if (verdict.violates && policy.mode === 'enforce') return hardRefusal(decision, `batch input file line ${line.line}: ${verdict.reason}`, { kind: 'refused', code: 'batch_line_refused', line: line.line });
    }
  }
  if (input.batchInputFile !== undefined && input.batchInputFile !== null && !ctx.batchFiles.passed(facts.customer, input.batchInputFile)) {
    return hardRefusal(decision, `batch input file ${input.batchInputFile} was not uploaded through the gateway with purpose=batch by customer ${facts.customer}, so its requests were never judged`, { kind: 'refused', code: 'batch_file_unchecked' });
  }
  return decision;
}

/** Replaces the policy's reason, so `causes` follows it: one cause per violation in `reason`. */
function hardRefusal(decision: Decision, reason: string, cause: Cause): Decision {
  return { ...decision, allowed: false, violates: true, reason, causes: [cause] };
}

function modelNotFound(model: string | null): GatewayError {
  return new GatewayError('model_not_found', `The model \`${model}\` is not served by any provider of this gateway`, { param: 'model' });
}

/** The governance headers of a request refused before the policy ran: a block, with its row when one was written. */
export function refusalHeaders(logId: string | null): OutgoingHttpHeaders {
  return logId
    ? { 'x-governance-decision': 'block', 'x-governance-risk-score': '0', 'x-governance-log-id': logId }
    : { 'x-governance-decision': 'block' };
}

/**
 * Records a request refused before the policy could run (malformed input, body
 * too large), so every authenticated request leaves exactly one row. Never
 * throws: the request is refused whatever happens to its row.
 */
export async function recordRefusal(ctx: GatewayContext, input: GovernInput, error: GatewayError): Promise<string | null> {
  const logId = uuidv7();
  const refusal = { allowed: false, riskScore: 0, reason: `${error.code}: ${error.message}`, causes: [{ kind: 'refused', code: error.code }] } as const;
  const row = decisionRow(logId, input.requestId, input.kind, input.method, factsOf(input, null), refusal, ctx.policy.policy.hash);
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
