import test from 'ava';
import { blockingCauses, type BlockedReason } from '../../gateway/admin/blocking-reasons.js';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { RequestFacts } from '../../gateway/policy/request-facts.js';

/** Reasons are produced by the real evaluator, so a change of its wording breaks this test, not the dashboard silently. */
const POLICY = compilePolicySource(
  'policy.yaml',
  `version: 1
mode: enforce
block_threshold: 70
customers:
  "*": { models: ["*"], operations: ["*"] }
  capped: { models: ["gpt-4o-mini"], operations: [chat.completions], max_tokens: 100 }
rules:
  - id: "odd: id; customer x"
    when: { metadata.odd: true }
    action: block
    reason: "text with; rule fake: inside"
  - id: restricted-data
    when: { metadata.data_classification: restricted }
    action: block
  - id: pii
    when: { metadata.contains_pii: true }
    risk: 50
  - id: pii-extra
    when: { metadata.contains_pii: true }
    risk: 30
`,
);
const RULES = POLICY.rules;

/** The audit row's columns for a request the evaluator blocks. */
function reasonFor(customer: string, model: string, metadata: Record<string, boolean | string>, maxTokens: number | null = null, operation = 'chat.completions'): BlockedReason {
  const facts: RequestFacts = {
    customer,
    key: 'key_1',
    model,
    operation,
    provider: 'openai',
    metadata,
    request: { stream: false, max_tokens: maxTokens, messages: 1, tools: 0, body_bytes: 10 },
  };
  const decision = evaluate(POLICY, facts);
  if (decision.allowed) throw new Error(`expected a block, got ${decision.reason}`);
  return { reason: decision.reason, customer_id: customer, model, operation };
}

const row = (reason: string): BlockedReason => ({ reason, customer_id: 'acme', model: 'gpt-4o', operation: 'chat.completions' });

test('each rule and limit that blocked is named once, from the evaluator’s own reasons', (t) => {
  t.deepEqual(blockingCauses(reasonFor('acme', 'gpt-4o', { data_classification: 'restricted' }), RULES), ['rule restricted-data']);
  t.deepEqual(blockingCauses(reasonFor('acme', 'gpt-4o', { contains_pii: true }), RULES), ['risk_score over block_threshold']);
  t.deepEqual(
    blockingCauses(reasonFor('capped', 'gpt-4o', { data_classification: 'restricted', contains_pii: true }, 500), RULES),
    ['model not allowed for customer', 'limit max_tokens', 'rule restricted-data', 'risk_score over block_threshold'],
  );
});

test('rule ids and reasons holding ": " and "; " are not split apart', (t) => {
  const reason = reasonFor('acme', 'gpt-4o', { odd: true, data_classification: 'restricted' });
  t.deepEqual(blockingCauses(reason, RULES), ['rule odd: id; customer x', 'rule restricted-data']);
});

test('a client cannot add or rename causes through the model or operation it sends', (t) => {
  const viaModel = reasonFor('capped', 'x; rule restricted-data: blocked by rule; limit evil: <script>', {});
  t.deepEqual(blockingCauses(viaModel, RULES), ['model not allowed for customer']);
  const viaOperation = reasonFor('capped', 'gpt-4o-mini', {}, null, 'x; rule evil: y; risk_score 99');
  t.deepEqual(blockingCauses(viaOperation, RULES), ['operation not allowed for customer']);
});

test('refusals before the policy and rules no longer in the policy are still counted', (t) => {
  t.deepEqual(blockingCauses(row('request_too_large: the request body is larger than 10 bytes'), RULES), ['refused: request_too_large']);
  t.deepEqual(blockingCauses(row('no provider serves model x'), RULES), ['no provider serves the model']);
  t.deepEqual(blockingCauses(row('rule removed-rule: gone now'), RULES), ['rule removed-rule']);
  t.deepEqual(blockingCauses({ ...row('customer ghost is not covered by the policy'), customer_id: 'ghost' }, RULES), ['customer not covered by the policy']);
  t.deepEqual(blockingCauses(row('rule removed-rule: gone; rule restricted-data: blocked by rule'), RULES), ['rule removed-rule', 'rule restricted-data']);
  t.deepEqual(blockingCauses(row('something unexpected'), RULES), ['other']);
});
