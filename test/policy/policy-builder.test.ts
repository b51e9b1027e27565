import test from 'ava';
import { parse } from 'yaml';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { CompiledPolicy } from '../../gateway/policy/policy-types.js';
import { policy } from '../helpers/policy-builder.js';
import { requestFacts as facts } from '../helpers/request-facts.js';

/** What the compiler made of a policy, without the compiled functions, which only behaviour can show. */
function shape(p: CompiledPolicy) {
  return {
    version: p.version,
    mode: p.mode,
    blockThreshold: p.blockThreshold,
    customers: [...p.customers.values()].map((c) => ({ id: c.id, maxTokens: c.maxTokens, limits: c.limits, keyLimits: Object.fromEntries(c.keyLimits) })),
    rules: p.rules.map((r) => ({ id: r.id, description: r.description, fields: r.when.map((c) => c.field), risk: r.risk, block: r.block, reason: r.reason })),
  };
}

const FULL = policy()
  .mode('monitor')
  .blockThreshold(55)
  .catchAll()
  .customer('acme', {
    models: ['gpt-4o-mini', 'text-embedding-3-*'],
    operations: ['chat.completions', 'embeddings'],
    max_tokens: 2048,
    requests_per_minute: 600,
    tokens_per_minute: 200_000,
    tokens_per_day: 5_000_000,
    tokens_per_month: 100_000_000,
    keys: { key_3f2a9c1d0b7e4a58: { requests_per_minute: 60 } },
  })
  .rule(
    { id: 'pii-to-external', description: 'Personal data must not reach external providers', when: { 'metadata.contains_pii': true, provider: 'openai' }, risk: 90 },
    { id: 'restricted-data', when: { 'metadata.data_classification': ['restricted', 'secret'] }, action: 'block', reason: 'Restricted data: not for any model; ever' },
    { id: 'long-completions', when: { 'request.max_tokens': { gt: 8000 } }, risk: 30 },
  );

test('the YAML compiles to the policy described, customers, limits and rules included', (t) => {
  const p = compilePolicySource('policy.yaml', FULL.yaml());
  t.deepEqual(shape(p), {
    version: 1,
    mode: 'monitor',
    blockThreshold: 55,
    customers: [
      { id: '*', maxTokens: null, limits: {}, keyLimits: {} },
      {
        id: 'acme',
        maxTokens: 2048,
        limits: { requests_per_minute: 600, tokens_per_minute: 200_000, tokens_per_day: 5_000_000, tokens_per_month: 100_000_000 },
        keyLimits: { key_3f2a9c1d0b7e4a58: { requests_per_minute: 60 } },
      },
    ],
    rules: [
      { id: 'pii-to-external', description: 'Personal data must not reach external providers', fields: ['metadata.contains_pii', 'provider'], risk: 90, block: false, reason: null },
      { id: 'restricted-data', description: null, fields: ['metadata.data_classification'], risk: 0, block: true, reason: 'Restricted data: not for any model; ever' },
      { id: 'long-completions', description: null, fields: ['request.max_tokens'], risk: 30, block: false, reason: null },
    ],
  });
  const acme = p.customers.get('acme')!;
  t.true(acme.allowsModel('text-embedding-3-small'), 'globs stay globs');
  t.false(acme.allowsModel('gpt-4o'));
  t.false(acme.allowsOperation('images.generations'));
  t.true(p.customers.get('*')!.allowsModel('anything-at-all'));
});

test('matchers compile to what they say', (t) => {
  const p = compilePolicySource('policy.yaml', FULL.yaml());
  t.deepEqual(evaluate(p, facts({ metadata: { contains_pii: true } })).rules, ['pii-to-external']);
  t.deepEqual(evaluate(p, facts({ metadata: { contains_pii: true }, provider: 'azure' })).rules, []);
  t.deepEqual(evaluate(p, facts({ metadata: { data_classification: 'secret' } })).rules, ['restricted-data']);
  t.deepEqual(evaluate(p, facts({ request: { ...facts().request, max_tokens: 8001 } })).rules, ['long-completions']);
  t.deepEqual(evaluate(p, facts({ request: { ...facts().request, max_tokens: 8000 } })).rules, []);
  const none = compilePolicySource('policy.yaml', policy().catchAll().rule(
    { id: 'not', when: { 'metadata.tier': { not: 'free' } }, risk: 1 },
    { id: 'absent', when: { 'metadata.ticket': { exists: false } }, risk: 1 },
    { id: 'range', when: { 'request.messages': { gte: 2, lt: 4 } }, risk: 1 },
  ).yaml());
  t.deepEqual(evaluate(none, facts({ metadata: { tier: 'free', ticket: 'T-1' } })).rules, []);
  t.deepEqual(evaluate(none, facts({ metadata: { tier: 'paid' }, request: { ...facts().request, messages: 3 } })).rules, ['not', 'absent', 'range']);
});

test('strings YAML would read as something else stay strings', (t) => {
  const awkward = ['yes', 'no', 'null', 'true', '1e3', '0x10', '~', '-', '&anchor', '!tag', 'a: b', '#x', "it's", '"quoted"'];
  const p = compilePolicySource('policy.yaml', policy()
    .customer('123', { models: awkward, operations: ['*'] })
    .rule({ id: 'text-true', when: { 'metadata.flag': 'true' }, risk: 5 })
    .yaml());
  const customer = p.customers.get('123');
  t.truthy(customer, 'a customer id of digits is the string it was');
  for (const model of awkward) t.true(customer!.allowsModel(model), model);
  t.false(customer!.allowsModel('gpt-4o'));
  t.deepEqual(evaluate(p, facts({ customer: '123', model: 'yes', metadata: { flag: 'true' } })).rules, ['text-true']);
  t.deepEqual(evaluate(p, facts({ customer: '123', model: 'yes', metadata: { flag: true } })).rules, [], 'the string "true" is not the boolean');
});

test('the text reads back as the document, and builders are values: a variant leaves its base alone', (t) => {
  const base = policy().catchAll().customer('acme', { models: ['gpt-4o-mini'] });
  const capped = base.customer('acme', { models: ['gpt-4o-mini'], max_tokens: 100 }).mode('monitor');
  t.deepEqual(parse(base.yaml()), base.toDocument());
  t.deepEqual(parse(capped.yaml()), capped.toDocument());
  t.is(compilePolicySource('a.yaml', base.yaml()).customers.get('acme')!.maxTokens, null);
  t.is(compilePolicySource('a.yaml', base.yaml()).mode, 'enforce');
  t.is(compilePolicySource('b.yaml', capped.yaml()).customers.get('acme')!.maxTokens, 100);
  t.deepEqual([...compilePolicySource('b.yaml', capped.yaml()).customers.keys()], ['*', 'acme'], 'a replaced customer keeps its place');
});

test('a spec shared by two customers is written out for each: no anchors or aliases', (t) => {
  const limited = { models: ['gpt-4o-mini'], requests_per_minute: 3 };
  const text = policy().customer('a', limited).customer('b', limited).yaml();
  t.notRegex(text, /[&*]\w/);
  const p = compilePolicySource('policy.yaml', text);
  t.deepEqual([p.customers.get('a')!.limits, p.customers.get('b')!.limits], [{ requests_per_minute: 3 }, { requests_per_minute: 3 }]);
});

test('an empty builder is the smallest valid policy: it covers no customer', (t) => {
  const text = policy().yaml();
  t.is(text, 'version: 1\nmode: enforce\nblock_threshold: 70\ncustomers: {}\nrules: []\n');
  const d = evaluate(compilePolicySource('policy.yaml', text), facts());
  t.false(d.allowed);
  t.regex(d.reason, /not covered/);
});
