import test from 'ava';
import { causeLabel, rowCauseLabels } from '../../gateway/admin/cause-labels.js';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { Cause } from '../../gateway/policy/policy-types.js';
import { policy } from '../helpers/policy-builder.js';

test('every kind of cause has its label; none holds a score, a cap or a batch line', (t) => {
  const labels: [Cause, string][] = [
    [{ kind: 'customer_not_covered' }, 'customer not covered by the policy'],
    [{ kind: 'allow_list', list: 'models' }, 'model not allowed for customer'],
    [{ kind: 'allow_list', list: 'operations' }, 'operation not allowed for customer'],
    [{ kind: 'max_tokens', cap: 100 }, 'limit max_tokens'],
    [{ kind: 'rule', rule: 'restricted-data' }, 'rule restricted-data'],
    [{ kind: 'risk_threshold', score: 95, threshold: 70 }, 'risk_score over block_threshold'],
    [{ kind: 'limit', limit: 'requests_per_minute' }, 'limit requests_per_minute'],
    [{ kind: 'no_provider' }, 'no provider serves the model'],
    [{ kind: 'refused', code: 'request_too_large' }, 'refused: request_too_large'],
    [{ kind: 'refused', code: 'invalid_batch_line', line: 7 }, 'refused: invalid_batch_line'],
  ];
  for (const [cause, label] of labels) t.is(causeLabel(cause), label, JSON.stringify(cause));
});

test('a row counts once per distinct label; NULL is a row from before causes were recorded', (t) => {
  t.deepEqual(rowCauseLabels(null), ['cause not recorded']);
  t.deepEqual(rowCauseLabels('[]'), []);
  const twice = JSON.stringify([
    { kind: 'refused', code: 'invalid_batch_line', line: 1 },
    { kind: 'refused', code: 'invalid_batch_line', line: 2 },
  ]);
  t.deepEqual(rowCauseLabels(twice), ['refused: invalid_batch_line']);
});

/** The evaluator writes the causes, so a change to what it records shows up here and not as a silent dashboard gap. */
test('the causes the policy evaluator records label as the dashboard has always named them', (t) => {
  const compiled = compilePolicySource(
    'policy.yaml',
    policy()
      .customer('capped', { models: ['gpt-4o-mini'], operations: ['chat.completions'], max_tokens: 100 })
      .rule({ id: 'odd: id; rule x', when: { 'metadata.odd': true }, action: 'block' }, { id: 'pii', when: { 'metadata.contains_pii': true }, risk: 80 })
      .yaml(),
  );
  const causes = (customer: string, model: string, metadata: Record<string, boolean>, maxTokens: number | null = null) =>
    evaluate(compiled, {
      customer,
      key: 'key_1',
      model,
      operation: 'chat.completions',
      provider: 'openai',
      metadata,
      request: { stream: false, max_tokens: maxTokens, messages: 1, tools: 0, body_bytes: 10 },
    }).causes;
  t.deepEqual(rowCauseLabels(JSON.stringify(causes('ghost', 'gpt-4o-mini', {}))), ['customer not covered by the policy']);
  t.deepEqual(rowCauseLabels(JSON.stringify(causes('capped', 'gpt-4o', {}))), ['model not allowed for customer']);
  t.deepEqual(rowCauseLabels(JSON.stringify(causes('capped', 'gpt-4o-mini', { odd: true, contains_pii: true }, 500))), [
    'limit max_tokens',
    'rule odd: id; rule x',
    'risk_score over block_threshold',
  ]);
});
