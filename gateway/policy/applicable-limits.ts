import type { CompiledPolicy } from './policy-types.js';
import { LIMIT_KINDS, type AppliedLimit, type LimitScope, type LimitSet } from './limit-kinds.js';

/**
 * The limits on a request by this customer with this key under the policy in
 * force: the key's own, then the customer's (or `"*"`'s, counted per customer).
 * Request limits come first, so a refusal names the cheapest check.
 */
export function applicableLimits(policy: CompiledPolicy, customer: string, keyId: string): readonly AppliedLimit[] {
  const customerPolicy = policy.customers.get(customer) ?? policy.customers.get('*');
  if (!customerPolicy) return [];
  const keyLimits = customerPolicy.keyLimits.get(keyId);
  const out: AppliedLimit[] = [];
  for (const kind of LIMIT_KINDS) {
    push(out, keyLimits, kind, 'key', keyId);
    push(out, customerPolicy.limits, kind, 'customer', customer);
  }
  return out;
}

function push(out: AppliedLimit[], set: LimitSet | undefined, kind: AppliedLimit['kind'], scope: LimitScope, id: string): void {
  const limit = set?.[kind];
  if (limit !== undefined) out.push({ kind, scope, id, limit });
}
