import test from 'ava';
import fc from 'fast-check';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { Cause, CompiledPolicy, Decision, IndexedField, Rule } from '../../gateway/policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../../gateway/policy/request-facts.js';
import { candidateRules } from '../../gateway/policy/rule-index.js';
import { requestFacts as facts } from '../helpers/request-facts.js';

/**
 * The evaluation every policy had before the index: every rule, in file order.
 * Written out here, not exported by the gateway, so the index is checked
 * against an independent statement of the decision.
 */
function referenceEvaluate(policy: CompiledPolicy, facts: RequestFacts): Decision {
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
    if (facts.model !== null && !customer.allowsModel(facts.model)) violation(`customer ${facts.customer} may not use model ${facts.model}`, { kind: 'allow_list', list: 'models' });
    if (!customer.allowsOperation(facts.operation)) violation(`customer ${facts.customer} may not use operation ${facts.operation}`, { kind: 'allow_list', list: 'operations' });
    const maxTokens = facts.request.max_tokens;
    if (customer.maxTokens !== null && maxTokens !== null && maxTokens > customer.maxTokens) {
      violation(`limit max_tokens: ${maxTokens} is over the cap of ${customer.maxTokens} for customer ${facts.customer}`, { kind: 'max_tokens', cap: customer.maxTokens });
    }
  }
  const matched: string[] = [];
  const risky: string[] = [];
  let risk = 0;
  for (const rule of policy.rules as readonly Rule[]) {
    if (!rule.when.every((cond) => cond.test(cond.read(facts)))) continue;
    matched.push(rule.id);
    if (rule.risk > 0) {
      risk += rule.risk;
      risky.push(`${rule.id} (${rule.risk})`);
    }
    if (rule.block) violation(`rule ${rule.id}: ${rule.reason ?? rule.description ?? 'blocked by rule'}`, { kind: 'rule', rule: rule.id });
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

const OPEN = { '*': { models: ['*'], operations: ['*'] } };

/** JSON is YAML: a policy from plain data. */
function policyOf(rules: unknown[], extra: Record<string, unknown> = {}): CompiledPolicy {
  return compilePolicySource('generated.yaml', JSON.stringify({ version: 1, customers: OPEN, rules, ...extra }));
}

function field(policy: CompiledPolicy, name: string): IndexedField {
  const found = policy.ruleIndex.fields.find((f) => f.field === name);
  if (!found) throw new Error(`no indexed field ${name}`);
  return found;
}

const ids = (policy: CompiledPolicy, positions: readonly number[]) => positions.map((p) => policy.rules[p]!.id);

// --- The index's shape ---------------------------------------------------------------------

test('a rule on metadata.project=X is filed under X and not visited for project Y or no project', (t) => {
  const p = policyOf([
    { id: 'x', when: { 'metadata.project': 'X', model: 'gpt-4*' }, risk: 10 },
    { id: 'y', when: { 'metadata.project': 'Y' }, risk: 10 },
    { id: 'xz', when: { 'metadata.project': ['X', 'Z'] }, risk: 10 },
  ]);
  const project = field(p, 'metadata.project');
  t.deepEqual([...project.values.entries()], [['X', [0, 2]], ['Y', [1]], ['Z', [2]]]);
  t.deepEqual(p.ruleIndex.always, []);
  t.deepEqual(p.ruleIndex.fields.map((f) => f.field), ['metadata.project'], 'the model glob is not needed: the exact project is more selective');
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: { project: 'Y' } }))), ['y']);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: { project: 'X' } }))), ['x', 'xz']);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: {} }))), []);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: { project: 'W' } }))), []);
});

test('rules with no condition that holds only for listed values are visited for every request', (t) => {
  const p = policyOf([
    { id: 'not', when: { 'metadata.project': { not: 'X' } } },
    { id: 'exists', when: { 'metadata.ticket': { exists: false } } },
    { id: 'range', when: { 'request.max_tokens': { gt: 8000 } } },
    { id: 'leading-star', when: { model: '*-preview' } },
    { id: 'star', when: { model: '*' } },
    { id: 'mixed-list', when: { model: ['gpt-4o', '*-mini'] } },
    { id: 'indexed', when: { operation: 'embeddings', 'request.stream': { not: true } } },
  ]);
  t.deepEqual(ids(p, p.ruleIndex.always), ['not', 'exists', 'range', 'leading-star', 'star', 'mixed-list']);
  t.deepEqual([...field(p, 'operation').values.entries()], [['embeddings', [6]]]);
});

test('values are filed by type: 1, "1" and true are different buckets, as `===` tells them apart', (t) => {
  const p = policyOf([
    { id: 'num', when: { 'metadata.v': 1 } },
    { id: 'str', when: { 'metadata.v': '1' } },
    { id: 'bool', when: { 'metadata.v': true } },
  ]);
  const v = field(p, 'metadata.v');
  t.deepEqual(v.values.get(1), [0]);
  t.deepEqual(v.values.get('1'), [1]);
  t.deepEqual(v.values.get(true), [2]);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: { v: '1' } }))), ['str']);
  t.deepEqual(evaluate(p, facts({ metadata: { v: 1 } })).rules, ['num']);
});

test('a glob with a literal start is filed under it; candidates are the rules whose start the fact begins with', (t) => {
  const p = policyOf([
    { id: 'gpt4', when: { model: 'gpt-4*' } },
    { id: 'gpt', when: { model: 'gpt-*' } },
    { id: 'exact-and-glob', when: { model: ['gpt-4o', 'gpt-4o*'] } },
    { id: 'o1', when: { model: 'o1-*mini' } },
  ]);
  const model = field(p, 'model');
  t.deepEqual(model.prefixes.map(({ length, rules }) => [length, [...rules.entries()]]), [
    [3, [['o1-', [3]]]],
    [4, [['gpt-', [1]]]],
    [5, [['gpt-4', [0]]]],
    [6, [['gpt-4o', [2]]]],
  ]);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ model: 'gpt-4o' }))), ['gpt4', 'gpt', 'exact-and-glob'], 'once each, in file order');
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ model: 'gpt-3.5' }))), ['gpt']);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ model: 'o1-preview' }))), ['o1'], 'a candidate still has to match: o1-*mini does not');
  t.deepEqual(evaluate(p, facts({ model: 'o1-preview' })).rules, []);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ model: null }))), []);
});

test('a rule filed under a value and a glob start that both fit is a candidate once', (t) => {
  const p = policyOf([{ id: 'twice', when: { model: ['gpt-4o', 'gpt-4o*'] }, risk: 30 }]);
  t.deepEqual(candidateRules(p.ruleIndex, facts({ model: 'gpt-4o' })), [0]);
  const d = evaluate(p, facts({ model: 'gpt-4o' }));
  t.deepEqual(d.rules, ['twice']);
  t.is(d.riskScore, 30);
});

test('rules from different buckets and `always` come back in file order, and so does the decision', (t) => {
  const p = policyOf([
    { id: 'a', when: { 'request.stream': { not: true } }, risk: 10 },
    { id: 'b', when: { 'metadata.project': 'X' }, action: 'block', reason: 'b blocks' },
    { id: 'c', when: { 'request.max_tokens': { exists: false } }, risk: 20 },
    { id: 'd', when: { customer: 'acme' }, action: 'block' },
    { id: 'e', when: { operation: ['chat.completions', 'responses'] }, risk: 45 },
  ], { block_threshold: 70 });
  const f = facts({ metadata: { project: 'X' } });
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, f)), ['a', 'b', 'c', 'd', 'e']);
  const d = evaluate(p, f);
  t.deepEqual(d.rules, ['a', 'b', 'c', 'd', 'e']);
  t.is(d.reason, 'rule b: b blocks; rule d: blocked by rule; risk_score 75 >= block_threshold 70: rules a (10), c (20), e (45)');
  t.deepEqual(d, referenceEvaluate(p, f));
});

test('the index is frozen with the policy', (t) => {
  const p = policyOf([{ id: 'x', when: { 'metadata.project': 'X' } }, { id: 'n', when: { 'metadata.project': { not: 'X' } } }]);
  t.true(Object.isFrozen(p.ruleIndex));
  t.true(Object.isFrozen(p.ruleIndex.always));
  t.true(Object.isFrozen(p.ruleIndex.fields));
  t.true(Object.isFrozen(field(p, 'metadata.project').values.get('X')));
});

test('a policy of 500 project rules visits only the rules of the request\'s project', (t) => {
  const rules = Array.from({ length: 500 }, (_, i) => ({ id: `p${i}`, when: { 'metadata.project': `project-${i}`, model: i % 2 ? 'gpt-4*' : 'o1-*' }, risk: 5 }));
  const p = policyOf([...rules, { id: 'long', when: { 'request.max_tokens': { gt: 8000 } }, risk: 30 }]);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: { project: 'project-41' } }))), ['p41', 'long']);
  t.deepEqual(evaluate(p, facts({ metadata: { project: 'project-41' } })).rules, ['p41']);
  t.deepEqual(ids(p, candidateRules(p.ruleIndex, facts({ metadata: { project: 'elsewhere' } }))), ['long']);
});

// --- Property: the index never changes a decision ------------------------------------------

const STRINGS = ['gpt-4o', 'gpt-4o-mini', 'gpt-4', 'gpt-', 'o1-mini', 'o1', 'x', 'xy', '1', 'true', '', 'chat.completions', 'embeddings', 'acme', 'globex'];
const NUMBERS = [0, 1, 2, 8000, 9000, -1];
const scalarArb: fc.Arbitrary<MetadataValue> = fc.oneof(fc.constantFrom(...STRINGS), fc.constantFrom(...NUMBERS), fc.boolean());
const globArb = fc.constantFrom('gpt-4*', 'gpt-*', 'gpt-4o*', '*-mini', '*', 'o1-*', 'x*y', 'x*', '**', 'g*-*i', '1*', 'e*s');
const leafArb: fc.Arbitrary<unknown> = fc.oneof(scalarArb, globArb);
const matcherArb: fc.Arbitrary<unknown> = fc.letrec<{ m: unknown }>((tie) => ({
  m: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    leafArb,
    fc.array(leafArb, { minLength: 1, maxLength: 4 }),
    // Lists a value can match twice over (as itself and by its start), so one rule lands in two buckets.
    fc.constantFrom(['gpt-4o', 'gpt-4o*'], ['x', 'x*', 'xy'], ['gpt-4*', 'gpt-*'], ['1', '1*', 1]),
    fc.record({ not: tie('m') }),
    fc.record({ exists: fc.boolean() }),
    fc.constantFrom({ gt: 1 }, { gte: 0, lt: 8000 }, { lte: 2 }, { gt: 8000 }),
  ),
})).m;
const FIELDS = ['metadata.a', 'metadata.b', 'metadata.project', 'model', 'operation', 'customer', 'provider', 'key', 'request.stream', 'request.max_tokens', 'request.tools'];
const ruleArb = fc.record({
  when: fc.uniqueArray(fc.tuple(fc.constantFrom(...FIELDS), matcherArb), { minLength: 1, maxLength: 3, selector: ([f]) => f }),
  risk: fc.integer({ min: 0, max: 60 }),
  block: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
  reason: fc.option(fc.constantFrom('no', 'not here'), { nil: undefined }),
});
const genPolicyArb = fc.record({
  mode: fc.constantFrom('enforce', 'monitor'),
  threshold: fc.integer({ min: 1, max: 100 }),
  customers: fc.constantFrom(
    { '*': { models: ['*'], operations: ['*'] } },
    { acme: { models: ['gpt-4*'], operations: ['chat.completions'], max_tokens: 8000 } },
    { '*': { models: ['o1-*', 'gpt-4o'] }, globex: { operations: ['embeddings'] } },
  ),
  rules: fc.array(ruleArb, { maxLength: 25 }),
});
const metaValueArb = fc.option(scalarArb, { nil: undefined });
const factsArb = fc.record({
  customer: fc.constantFrom('acme', 'globex', 'initech', '1'),
  key: fc.constantFrom('key_a', 'gpt-4o'),
  model: fc.option(fc.constantFrom(...STRINGS), { nil: null }),
  operation: fc.constantFrom('chat.completions', 'embeddings', 'e', 'x'),
  provider: fc.option(fc.constantFrom('openai', 'azure', 'x'), { nil: null }),
  a: metaValueArb, b: metaValueArb, project: metaValueArb,
  stream: fc.boolean(),
  max_tokens: fc.option(fc.constantFrom(...NUMBERS), { nil: null }),
  tools: fc.option(fc.constantFrom(0, 1, 2), { nil: null }),
});

test('property: with the index, every decision is byte-for-byte the one of the loop over every rule', (t) => {
  let matchedSome = 0;
  fc.assert(
    fc.property(genPolicyArb, fc.array(factsArb, { minLength: 1, maxLength: 12 }), (gen, many) => {
      const rules = gen.rules.map((r, i) => ({
        id: `r${i}`,
        when: Object.fromEntries(r.when),
        risk: r.risk,
        ...(r.block ? { action: 'block' } : {}),
        ...(r.reason === undefined ? {} : { reason: r.reason }),
      }));
      const p = compilePolicySource('generated.yaml', JSON.stringify({ version: 1, mode: gen.mode, block_threshold: gen.threshold, customers: gen.customers, rules }));
      for (const g of many) {
        const metadata: Record<string, MetadataValue> = {};
        if (g.a !== undefined) metadata.a = g.a;
        if (g.b !== undefined) metadata.b = g.b;
        if (g.project !== undefined) metadata.project = g.project;
        const f: RequestFacts = {
          customer: g.customer, key: g.key, model: g.model, operation: g.operation, provider: g.provider, metadata,
          request: { stream: g.stream, max_tokens: g.max_tokens, messages: 1, tools: g.tools, body_bytes: 10 },
        };
        const indexed = JSON.stringify(evaluate(p, f));
        const reference = JSON.stringify(referenceEvaluate(p, f));
        if (indexed !== reference) throw new Error(`decisions differ\n  indexed:   ${indexed}\n  reference: ${reference}`);
        // Candidates are in file order and each once; every rule the index leaves out fails for these facts.
        const list = candidateRules(p.ruleIndex, f);
        if (!list.every((n, i) => i === 0 || list[i - 1]! < n)) throw new Error(`candidates not strictly ascending: ${list.join(', ')}`);
        const candidates = new Set(list);
        p.rules.forEach((rule, i) => {
          if (!candidates.has(i) && rule.when.every((c) => c.test(c.read(f)))) throw new Error(`rule ${rule.id} matches but is not a candidate`);
        });
        if (JSON.parse(indexed).rules.length > 0) matchedSome++;
      }
    }),
    { seed: 1018, numRuns: 1500 },
  );
  t.true(matchedSome > 200, `generated cases should often match rules (matched in ${matchedSome})`);
});
