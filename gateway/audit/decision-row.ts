import type { Decision } from '../policy/policy-types.js';
import type { RequestFacts } from '../policy/request-facts.js';
import type { DecisionRow } from './audit-writer.js';
import { sqliteTime } from '../store/sqlite-time.js';

export type DecisionKind = 'proxy' | 'check' | 'websocket';

/**
 * The audit row of a decision. `meta` holds the governance metadata and the
 * derived, content-free facts, which is what `audit explain` replays against
 * the policy named by `policy_hash`; nothing here comes from message text.
 */
export function decisionRow(
  logId: string,
  requestId: string,
  kind: DecisionKind,
  method: string,
  facts: RequestFacts,
  decision: Pick<Decision, 'allowed' | 'riskScore' | 'reason' | 'causes'>,
  policyHash: string,
): DecisionRow {
  return {
    id: logId,
    customer_id: facts.customer,
    api_key_id: facts.key,
    model: facts.model,
    operation: facts.operation,
    meta: JSON.stringify({
      metadata: facts.metadata,
      ...facts.request,
      provider: facts.provider,
      request_id: requestId,
      kind,
      method,
    }),
    risk_score: decision.riskScore,
    allowed: decision.allowed ? 1 : 0,
    reason: decision.reason,
    created_at: sqliteTime(),
    policy_hash: policyHash,
    causes: JSON.stringify(decision.causes),
  };
}
