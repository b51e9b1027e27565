import type { Cause, CompiledPolicy, Decision, Rule } from './policy-types.js';
import type { RequestFacts } from './request-facts.js';
import { candidateRules } from './rule-index.js';

/** The decision for a model no provider serves: refused, whatever the policy says. */
export function unroutable(model: string | null): Decision {
  return { allowed: false, violates: true, riskScore: 0, reason: `no provider serves model ${model}`, rules: [], causes: [{ kind: 'no_provider' }] };
}

/** How a blocking rule is named in a decision's reason. */
function ruleViolation(rule: Pick<Rule, 'id' | 'reason' | 'description'>): string {
  return `rule ${rule.id}: ${rule.reason ?? rule.description ?? 'blocked by rule'}`;
}

/**
 * The policy decision: a pure function of the compiled policy and the request
 * facts. Every limit and rule that refuses the request is named in `reason`
 * and, structured, in `causes`.
 */
export function evaluate(policy: CompiledPolicy, facts: RequestFacts): Decision {
  const violations: string[] = [];
  const causes: Cause[] = [];
  const violation = (text: string, cause: Cause) => {
    violations.push(text);
    causes.push(cause);
  };
  const customer = policy.customers.get(facts.customer) ?? policy.customers.get('*');

  if (!customer) {
    violation(`customer ${facts.customer} is not covered by the policy`, { kind: 'customer_not_covered' });
  } else {
    if (facts.model !== null && !customer.allowsModel(facts.model)) {
      violation(`customer ${facts.customer} may not use model ${facts.model}`, { kind: 'allow_list', list: 'models' });
    }
    if (!customer.allowsOperation(facts.operation)) {
      violation(`customer ${facts.customer} may not use operation ${facts.operation}`, { kind: 'allow_list', list: 'operations' });
    }
    const maxTokens = facts.request.max_tokens;
    if (customer.maxTokens !== null && maxTokens !== null && maxTokens > customer.maxTokens) {
      violation(`limit max_tokens: ${maxTokens} is over the cap of ${customer.maxTokens} for customer ${facts.customer}`, { kind: 'max_tokens', cap: customer.maxTokens });
    }
  }

  const matched: string[] = [];
  const risky: string[] = [];
  let risk = 0;
  // Only the rules the index leaves can match; the others each have a condition these facts fail.
  for (const position of candidateRules(policy.ruleIndex, facts)) {
    const rule = policy.rules[position]!;
    if (!rule.when.every((cond) => cond.test(cond.read(facts)))) continue;
    matched.push(rule.id);
    if (rule.risk > 0) {
      risk += rule.risk;
      risky.push(`${rule.id} (${rule.risk})`);
    }
    if (rule.block) violation(ruleViolation(rule), { kind: 'rule', rule: rule.id });
  }
  const riskScore = Math.min(100, risk);
  if (riskScore >= policy.blockThreshold) {
    violation(`risk_score ${riskScore} >= block_threshold ${policy.blockThreshold}: rules ${risky.join(', ') || 'none'}`, { kind: 'risk_threshold', score: riskScore, threshold: policy.blockThreshold });
  }

  const violates = violations.length > 0;
  let reason: string;
  if (!violates) reason = matched.length > 0 ? `allowed: risk_score ${riskScore}, rules ${matched.join(', ')}` : 'allowed';
  else if (policy.mode === 'monitor') reason = `monitor mode, would block: ${violations.join('; ')}`;
  else reason = violations.join('; ');

  return { allowed: !violates || policy.mode === 'monitor', violates, riskScore, reason, rules: matched, causes };
}
