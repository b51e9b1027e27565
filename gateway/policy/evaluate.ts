import type { CompiledPolicy, Rule, Decision } from './policy-types.js';
import type { RequestFacts } from './request-facts.js';

/** The decision for a model no provider serves: refused, whatever the policy says. */
export function unroutable(model: string | null): Decision {
  return { allowed: false, violates: true, riskScore: 0, reason: `no provider serves model ${model}`, rules: [] };
}

/** How a blocking rule is named in a decision's reason; the admin dashboard reads reasons back with it. */
export function ruleViolation(rule: Pick<Rule, 'id' | 'reason' | 'description'>): string {
  return `rule ${rule.id}: ${rule.reason ?? rule.description ?? 'blocked by rule'}`;
}

/**
 * The policy decision: a pure function of the compiled policy and the request
 * facts. Every limit and rule that refuses the request is named in `reason`.
 */
export function evaluate(policy: CompiledPolicy, facts: RequestFacts): Decision {
  const violations: string[] = [];
  const customer = policy.customers.get(facts.customer) ?? policy.customers.get('*');

  if (!customer) {
    violations.push(`customer ${facts.customer} is not covered by the policy`);
  } else {
    if (facts.model !== null && !customer.allowsModel(facts.model)) {
      violations.push(`customer ${facts.customer} may not use model ${facts.model}`);
    }
    if (!customer.allowsOperation(facts.operation)) {
      violations.push(`customer ${facts.customer} may not use operation ${facts.operation}`);
    }
    const maxTokens = facts.request.max_tokens;
    if (customer.maxTokens !== null && maxTokens !== null && maxTokens > customer.maxTokens) {
      violations.push(`limit max_tokens: ${maxTokens} is over the cap of ${customer.maxTokens} for customer ${facts.customer}`);
    }
  }

  const matched: string[] = [];
  const risky: string[] = [];
  let risk = 0;
  for (const rule of policy.rules) {
    if (!rule.when.every((cond) => cond.test(cond.read(facts)))) continue;
    matched.push(rule.id);
    if (rule.risk > 0) {
      risk += rule.risk;
      risky.push(`${rule.id} (${rule.risk})`);
    }
    if (rule.block) violations.push(ruleViolation(rule));
  }
  const riskScore = Math.min(100, risk);
  if (riskScore >= policy.blockThreshold) {
    violations.push(`risk_score ${riskScore} >= block_threshold ${policy.blockThreshold}: rules ${risky.join(', ') || 'none'}`);
  }

  const violates = violations.length > 0;
  let reason: string;
  if (!violates) reason = matched.length > 0 ? `allowed: risk_score ${riskScore}, rules ${matched.join(', ')}` : 'allowed';
  else if (policy.mode === 'monitor') reason = `monitor mode, would block: ${violations.join('; ')}`;
  else reason = violations.join('; ');

  return { allowed: !violates || policy.mode === 'monitor', violates, riskScore, reason, rules: matched };
}
