import test from 'ava';
import fc from 'fast-check';
import { jsonFacts } from '../../gateway/facts/read-request.js';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { CompiledPolicy, Decision } from '../../gateway/policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../../gateway/policy/request-facts.js';
import { FIXTURE_POLICY } from '../helpers/gateway-harness.js';
import { policy, type Comparison, type Field, type Matcher } from '../helpers/policy-builder.js';
import { requestFacts as facts, type FactsOverride } from '../helpers/request-facts.js';

const compiled = new Map<string, CompiledPolicy>();
function compile(yaml: string): CompiledPolicy {
  let p = compiled.get(yaml);
  if (!p) {
    p = compilePolicySource('test-policy.yaml', yaml);
    compiled.set(yaml, p);
  }
  return p;
}

/** A policy whose only rule `r` (risk 10, under any threshold) matches when `field` satisfies `matcher`. */
function singleRule(field: Field, matcher: Matcher): CompiledPolicy {
  return compile(policy().catchAll().rule({ id: 'r', when: { [field]: matcher }, risk: 10 }).yaml());
}

function ruleMatches(field: Field, matcher: Matcher, f: RequestFacts): boolean {
  const d = evaluate(singleRule(field, matcher), f);
  return d.rules.includes('r');
}

/** Facts whose metadata.v is `value`, or has no v at all when `value` is undefined. */
function withV(value: MetadataValue | undefined): RequestFacts {
  return facts({ metadata: value === undefined ? {} : { v: value } });
}

const ACME = policy()
  .catchAll()
  .customer('acme', { models: ['gpt-4o-mini', 'text-embedding-3-*'], operations: ['chat.completions', 'embeddings'], max_tokens: 2048 });
const ACME_POLICY = ACME.yaml();

test('a listed customer may use exactly its models and operations, with * globs in the allow-list', (t) => {
  const p = compile(ACME_POLICY);
  const ok = (model: string, operation: string) => evaluate(p, facts({ customer: 'acme', model, operation }));

  for (const [model, operation] of [
    ['gpt-4o-mini', 'chat.completions'],
    ['text-embedding-3-small', 'embeddings'],
    ['text-embedding-3-large', 'embeddings'],
  ] as const) {
    const d = ok(model, operation);
    t.true(d.allowed, `${model} ${operation}: ${d.reason}`);
    t.false(d.violates);
  }

  const wrongModel = ok('gpt-4o', 'chat.completions');
  t.false(wrongModel.allowed);
  t.true(wrongModel.violates);
  t.regex(wrongModel.reason, /model/);
  t.regex(wrongModel.reason, /\bgpt-4o\b/);

  // The glob is anchored: text-embedding-3-* does not admit an older family.
  t.false(ok('text-embedding-ada-002', 'embeddings').allowed);
  t.false(ok('xtext-embedding-3-small', 'embeddings').allowed);

  const wrongOperation = ok('gpt-4o-mini', 'images.generations');
  t.false(wrongOperation.allowed);
  t.regex(wrongOperation.reason, /operation/);
  t.regex(wrongOperation.reason, /images\.generations/);
});

test('"*" covers customers that are not listed, and a listed customer gets only its own entry', (t) => {
  const p = compile(policy().catchAll({ models: ['gpt-4o-mini'], operations: ['chat.completions'] }).customer('acme', { models: ['gpt-4o'], operations: ['*'] }).yaml());
  t.true(evaluate(p, facts({ customer: 'globex', model: 'gpt-4o-mini' })).allowed);
  const globex = evaluate(p, facts({ customer: 'globex', model: 'gpt-4o' }));
  t.false(globex.allowed);
  t.regex(globex.reason, /gpt-4o/);
  t.false(evaluate(p, facts({ customer: 'globex', model: 'gpt-4o-mini', operation: 'embeddings' })).allowed);

  t.true(evaluate(p, facts({ customer: 'acme', model: 'gpt-4o', operation: 'embeddings' })).allowed);
  t.false(evaluate(p, facts({ customer: 'acme', model: 'gpt-4o-mini' })).allowed, 'acme is listed, so "*" does not widen its models');
});

test('a customer that is not listed is blocked when the policy has no "*" entry', (t) => {
  const p = compile(policy().customer('acme').yaml());
  t.true(evaluate(p, facts({ customer: 'acme' })).allowed);
  const d = evaluate(p, facts({ customer: 'globex' }));
  t.false(d.allowed);
  t.true(d.violates);
  t.regex(d.reason, /globex/);
});

test('max_tokens over the customer cap is blocked; at the cap or absent it is not', (t) => {
  const p = compile(ACME_POLICY);
  t.true(evaluate(p, facts({ request: { max_tokens: 2048 } })).allowed);
  t.true(evaluate(p, facts({ request: { max_tokens: null } })).allowed);
  const over = evaluate(p, facts({ request: { max_tokens: 2049 } }));
  t.false(over.allowed);
  t.regex(over.reason, /max_tokens/);
  t.regex(over.reason, /2048/);
  // The cap is per customer: "*" has none.
  t.true(evaluate(p, facts({ customer: 'globex', request: { max_tokens: 100_000 } })).allowed);
});

test('max_tokens and max_completion_tokens in a body both reach the policy as request.max_tokens', (t) => {
  const p = compile(ACME_POLICY);
  for (const field of ['max_tokens', 'max_completion_tokens']) {
    const body = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], [field]: 4096 }));
    const described = jsonFacts('chat.completions', JSON.parse(body.toString()) as Record<string, unknown>, body.length);
    t.is(described.max_tokens, 4096, field);
    const d = evaluate(p, facts({ request: described }));
    t.false(d.allowed, `${field} over the cap must be blocked`);
    t.regex(d.reason, /max_tokens/);
  }
});

test('every field of the policy language reads the matching fact', (t) => {
  const cases: { field: Field; value: MetadataValue; hit: FactsOverride; miss: FactsOverride }[] = [
    { field: 'model', value: 'gpt-4o', hit: { model: 'gpt-4o' }, miss: { model: 'gpt-4o-mini' } },
    { field: 'operation', value: 'embeddings', hit: { operation: 'embeddings' }, miss: { operation: 'chat.completions' } },
    { field: 'provider', value: 'azure', hit: { provider: 'azure' }, miss: { provider: 'openai' } },
    { field: 'customer', value: 'globex', hit: { customer: 'globex' }, miss: { customer: 'acme' } },
    { field: 'key', value: 'key_abc', hit: { key: 'key_abc' }, miss: { key: 'key_abd' } },
    { field: 'metadata.team', value: 'search', hit: { metadata: { team: 'search' } }, miss: { metadata: { team: 'ads', other: 'search' } } },
    { field: 'request.max_tokens', value: 512, hit: { request: { max_tokens: 512 } }, miss: { request: { max_tokens: 513 } } },
    { field: 'request.stream', value: true, hit: { request: { stream: true } }, miss: { request: { stream: false } } },
    { field: 'request.messages', value: 3, hit: { request: { messages: 3 } }, miss: { request: { messages: 2 } } },
    { field: 'request.body_bytes', value: 2048, hit: { request: { body_bytes: 2048 } }, miss: { request: { body_bytes: 2047 } } },
  ];
  for (const { field, value, hit, miss } of cases) {
    const p = singleRule(field, value);
    const yes = evaluate(p, facts(hit));
    t.deepEqual(yes.rules, ['r'], `${field} should match ${JSON.stringify(hit)}`);
    t.is(yes.riskScore, 10, field);
    const no = evaluate(p, facts(miss));
    t.deepEqual(no.rules, [], `${field} should not match ${JSON.stringify(miss)}`);
    t.is(no.riskScore, 0, field);
  }
});

test('scalar matchers test equality, of strings, numbers and booleans', (t) => {
  t.true(ruleMatches('metadata.v', 'internal', withV('internal')));
  t.false(ruleMatches('metadata.v', 'internal', withV('internal-only')));
  t.false(ruleMatches('metadata.v', 'internal', withV('Internal')));
  t.false(ruleMatches('metadata.v', 'internal', withV(undefined)));
  t.true(ruleMatches('metadata.v', 3, withV(3)));
  t.false(ruleMatches('metadata.v', 3, withV(4)));
  t.true(ruleMatches('metadata.v', true, withV(true)));
  t.false(ruleMatches('metadata.v', true, withV(false)));
  t.false(ruleMatches('metadata.v', true, withV(undefined)));
  t.true(ruleMatches('metadata.v', false, withV(false)));
});

test('string matchers take * globs, anchored at both ends, with every other character literal', (t) => {
  t.true(ruleMatches('model', 'gpt-4*', facts({ model: 'gpt-4o' })));
  t.true(ruleMatches('model', 'gpt-4*', facts({ model: 'gpt-4o-mini' })));
  t.true(ruleMatches('model', 'gpt-4*', facts({ model: 'gpt-4' })));
  t.false(ruleMatches('model', 'gpt-4*', facts({ model: 'gpt-3.5-turbo' })));
  t.false(ruleMatches('model', 'gpt-4*', facts({ model: 'my-gpt-4o' })));
  t.true(ruleMatches('model', 'text-*-small', facts({ model: 'text-embedding-3-small' })));
  t.false(ruleMatches('model', 'text-*-small', facts({ model: 'text-embedding-3-large' })));
  t.true(ruleMatches('model', '*-mini', facts({ model: 'o4-mini' })));
  t.true(ruleMatches('model', 'o1.preview', facts({ model: 'o1.preview' })));
  t.false(ruleMatches('model', 'o1.preview', facts({ model: 'o1xpreview' })), 'a dot is not a regular-expression wildcard');
  t.false(ruleMatches('model', 'gpt-(4)', facts({ model: 'gpt-4' })));
});

test('a list matches when any of its items matches', (t) => {
  const list = ['restricted', 'secret'];
  t.true(ruleMatches('metadata.v', list, withV('restricted')));
  t.true(ruleMatches('metadata.v', list, withV('secret')));
  t.false(ruleMatches('metadata.v', list, withV('internal')));
  t.false(ruleMatches('metadata.v', list, withV(undefined)));
  t.true(ruleMatches('model', ['o1', 'gpt-4*'], facts({ model: 'gpt-4o' })));
  t.false(ruleMatches('model', ['o1', 'gpt-4*'], facts({ model: 'o3' })));
  t.true(ruleMatches('metadata.v', [1, 2], withV(2)));
  t.false(ruleMatches('metadata.v', [1, 2], withV(3)));
});

test('{not: M} matches exactly what M does not', (t) => {
  t.true(ruleMatches('metadata.v', { not: 'public' }, withV('internal')));
  t.false(ruleMatches('metadata.v', { not: 'public' }, withV('public')));
  t.true(ruleMatches('metadata.v', { not: 'public' }, withV(undefined)), 'an absent value is not "public"');
  t.true(ruleMatches('metadata.v', { not: ['a', 'b'] }, withV('c')));
  t.false(ruleMatches('metadata.v', { not: ['a', 'b'] }, withV('b')));
  t.true(ruleMatches('request.max_tokens', { not: { gt: 5 } }, facts({ request: { max_tokens: 5 } })));
  t.false(ruleMatches('request.max_tokens', { not: { gt: 5 } }, facts({ request: { max_tokens: 6 } })));
  t.false(ruleMatches('model', { not: 'gpt-*' }, facts({ model: 'gpt-4o' })));
});

test('comparisons gt, gte, lt, lte hold at their boundaries and only for numbers', (t) => {
  const mt = (n: number | null) => facts({ request: { max_tokens: n } });
  const table: [Comparison, number, boolean][] = [
    [{ gt: 5 }, 5, false], [{ gt: 5 }, 6, true], [{ gt: 5 }, 5.5, true],
    [{ gte: 5 }, 5, true], [{ gte: 5 }, 4, false],
    [{ lt: 5 }, 5, false], [{ lt: 5 }, 4, true],
    [{ lte: 5 }, 5, true], [{ lte: 5 }, 6, false],
    [{ gt: 1, lt: 5 }, 0, false], [{ gt: 1, lt: 5 }, 1, false], [{ gt: 1, lt: 5 }, 2, true],
    [{ gt: 1, lt: 5 }, 4.9, true], [{ gt: 1, lt: 5 }, 5, false], [{ gt: 1, lt: 5 }, 6, false],
    [{ gte: 1, lte: 5 }, 1, true], [{ gte: 1, lte: 5 }, 5, true],
  ];
  for (const [matcher, value, expected] of table) {
    t.is(ruleMatches('request.max_tokens', matcher, mt(value)), expected, `${JSON.stringify(matcher)} on ${value}`);
    t.is(ruleMatches('metadata.v', matcher, withV(value)), expected, `metadata ${JSON.stringify(matcher)} on ${value}`);
  }
  t.false(ruleMatches('request.max_tokens', { gt: 5 }, mt(null)), 'an absent max_tokens is not greater than anything');
  t.false(ruleMatches('request.max_tokens', { lt: 5 }, mt(null)), 'an absent max_tokens is not less than anything');
  t.false(ruleMatches('metadata.v', { gt: 5 }, withV('6')), 'a string is not a number');
  t.false(ruleMatches('metadata.v', { gt: 5 }, withV(undefined)));
});

test('{exists: true|false} tests whether the fact is present', (t) => {
  t.true(ruleMatches('metadata.ticket', { exists: true }, facts({ metadata: { ticket: 'T-1' } })));
  t.true(ruleMatches('metadata.ticket', { exists: true }, facts({ metadata: { ticket: false } })), 'false is a present value');
  t.true(ruleMatches('metadata.ticket', { exists: true }, facts({ metadata: { ticket: 0 } })), '0 is a present value');
  t.false(ruleMatches('metadata.ticket', { exists: true }, facts({ metadata: { other: 'T-1' } })));
  t.true(ruleMatches('metadata.ticket', { exists: false }, facts({ metadata: {} })));
  t.false(ruleMatches('metadata.ticket', { exists: false }, facts({ metadata: { ticket: 'T-1' } })));
  t.true(ruleMatches('request.max_tokens', { exists: false }, facts({ request: { max_tokens: null } })));
  t.false(ruleMatches('request.max_tokens', { exists: false }, facts({ request: { max_tokens: 10 } })));
  t.true(ruleMatches('request.max_tokens', { exists: true }, facts({ request: { max_tokens: 10 } })));
});

test('a rule matches only when every entry of its when matches', (t) => {
  const p = compile(policy().catchAll().rule({ id: 'both', when: { 'metadata.contains_pii': true, provider: 'openai' }, risk: 20 }).yaml());
  t.deepEqual(evaluate(p, facts({ provider: 'openai', metadata: { contains_pii: true } })).rules, ['both']);
  t.deepEqual(evaluate(p, facts({ provider: 'azure', metadata: { contains_pii: true } })).rules, []);
  t.deepEqual(evaluate(p, facts({ provider: 'openai', metadata: { contains_pii: false } })).rules, []);
});

const RISK_POLICY = policy()
  .catchAll()
  .rule(
    { id: 'a', when: { 'metadata.a': true }, risk: 35 },
    { id: 'b', when: { 'metadata.b': true }, risk: 34 },
    { id: 'c', when: { 'metadata.c': true }, risk: 35 },
    { id: 'd', when: { 'metadata.d': true }, risk: 50 },
  )
  .yaml();

test('risk_score is the sum of the matching rules\' risk, capped at 100', (t) => {
  const p = compile(RISK_POLICY);
  const score = (metadata: Record<string, boolean>) => evaluate(p, facts({ metadata })).riskScore;
  t.is(score({}), 0);
  t.is(score({ a: true }), 35);
  t.is(score({ a: true, b: true }), 69);
  t.is(score({ a: true, c: true }), 70);
  t.is(score({ a: true, b: true, c: true, d: true }), 100, '154 is capped at 100');
  t.is(score({ a: false, d: true }), 50);
});

test('a request is blocked when risk_score reaches block_threshold (>=), not below it', (t) => {
  const p = compile(RISK_POLICY);
  const below = evaluate(p, facts({ metadata: { a: true, b: true } }));
  t.is(below.riskScore, 69);
  t.true(below.allowed);
  t.false(below.violates);
  t.deepEqual([...below.rules].sort(), ['a', 'b']);

  const at = evaluate(p, facts({ metadata: { a: true, c: true } }));
  t.is(at.riskScore, 70);
  t.false(at.allowed);
  t.true(at.violates);
  // The reason names the rules whose risk added up to the block.
  t.regex(at.reason, /\ba\b/);
  t.regex(at.reason, /\bc\b/);
  t.regex(at.reason, /70/);
});

test('action: block refuses the request whatever its risk, with the rule and its reason', (t) => {
  const p = compile(FIXTURE_POLICY);
  const d = evaluate(p, facts({ metadata: { data_classification: 'restricted' } }));
  t.false(d.allowed);
  t.true(d.violates);
  t.is(d.riskScore, 0);
  t.deepEqual(d.rules, ['restricted-data']);
  t.true(d.reason.includes('rule restricted-data: Restricted data may not be sent to any model'), d.reason);
  t.true(evaluate(p, facts({ metadata: { data_classification: 'internal' } })).allowed);
});

test('the shipped policy scores personal data to openai at 90 and blocks it', (t) => {
  const p = compile(FIXTURE_POLICY);
  const d = evaluate(p, facts({ provider: 'openai', metadata: { contains_pii: true } }));
  t.is(d.riskScore, 90);
  t.deepEqual(d.rules, ['pii-to-external']);
  t.false(d.allowed);
  t.regex(d.reason, /pii-to-external/);
  const elsewhere = evaluate(p, facts({ provider: 'on-prem', metadata: { contains_pii: true } }));
  t.is(elsewhere.riskScore, 0);
  t.true(elsewhere.allowed);
  const long = evaluate(p, facts({ request: { max_tokens: 8001 } }));
  t.is(long.riskScore, 30);
  t.deepEqual(long.rules, ['long-completions']);
  t.true(long.allowed);
  t.is(evaluate(p, facts({ request: { max_tokens: 8000 } })).riskScore, 0);
});

const EVERYTHING_BLOCKS = policy()
  .customer('acme', { models: ['gpt-4o-mini'], operations: ['chat.completions'], max_tokens: 100 })
  .rule(
    { id: 'restricted-data', when: { 'metadata.data_classification': ['restricted', 'secret'] }, action: 'block', reason: 'Restricted data may not be sent to any model' },
    { id: 'no-streaming', description: 'Streaming is off for this customer', when: { 'request.stream': true }, action: 'block' },
    { id: 'pii-to-external', when: { 'metadata.contains_pii': true }, risk: 90 },
    { id: 'harmless', when: { customer: 'acme' }, risk: 1 },
  )
  .yaml();

test('the reason names every rule and limit that blocked the request', (t) => {
  const p = compile(EVERYTHING_BLOCKS);
  const d = evaluate(p, facts({
    customer: 'acme',
    model: 'gpt-4o',
    operation: 'embeddings',
    metadata: { data_classification: 'secret', contains_pii: true },
    request: { max_tokens: 500, stream: true },
  }));
  t.false(d.allowed);
  t.is(d.riskScore, 91);
  t.deepEqual([...d.rules].sort(), ['harmless', 'no-streaming', 'pii-to-external', 'restricted-data']);
  t.true(d.reason.includes('rule restricted-data: Restricted data may not be sent to any model'), d.reason);
  t.true(d.reason.includes('rule no-streaming: '), d.reason);
  t.regex(d.reason, /pii-to-external/);
  t.regex(d.reason, /\bgpt-4o\b/, 'the model limit');
  t.regex(d.reason, /embeddings/, 'the operation limit');
  t.regex(d.reason, /max_tokens/, 'the max_tokens cap');

  // Only the blocking rule is named as a blocker when it alone blocks.
  const one = evaluate(p, facts({ customer: 'acme', request: { stream: true } }));
  t.false(one.allowed);
  t.true(one.reason.includes('rule no-streaming: '), one.reason);
  t.false(one.reason.includes('restricted-data'), one.reason);
});

test('monitor mode lets the request through but records that enforce mode would block it', (t) => {
  const p = compile(FIXTURE_POLICY.replace(/^mode: enforce/m, 'mode: monitor'));
  t.is(p.mode, 'monitor');
  const d = evaluate(p, facts({ metadata: { data_classification: 'restricted', contains_pii: true } }));
  t.true(d.allowed);
  t.true(d.violates);
  t.is(d.riskScore, 90);
  t.regex(d.reason, /would block/i);
  t.true(d.reason.includes('rule restricted-data: Restricted data may not be sent to any model'), d.reason);
  t.regex(d.reason, /pii-to-external/);

  const clean = evaluate(p, facts());
  t.true(clean.allowed);
  t.false(clean.violates);
  t.notRegex(clean.reason, /would block/i);
});

test('an allowed request is not reported as violating', (t) => {
  const d = evaluate(compile(FIXTURE_POLICY), facts());
  t.true(d.allowed);
  t.false(d.violates);
  t.is(d.riskScore, 0);
  t.deepEqual(d.rules, []);
});

// --- Properties over generated policies and facts -------------------------------------------

const KEYS = ['a', 'b', 'c'] as const;
const VALUES: MetadataValue[] = [1, 2, 3, 'x', 'y', true, false];

type Cond =
  | { key: (typeof KEYS)[number]; kind: 'eq'; value: MetadataValue }
  | { key: (typeof KEYS)[number]; kind: 'list'; values: MetadataValue[] }
  | { key: (typeof KEYS)[number]; kind: 'gt'; bound: number }
  | { key: (typeof KEYS)[number]; kind: 'noteq'; value: MetadataValue }
  | { key: (typeof KEYS)[number]; kind: 'exists'; present: boolean };

interface GenRule {
  risk: number;
  block: boolean;
  conds: Cond[];
}

const keyArb = fc.constantFrom(...KEYS);
const valueArb = fc.constantFrom(...VALUES);
const condArb: fc.Arbitrary<Cond> = fc.oneof(
  fc.record({ key: keyArb, kind: fc.constant('eq' as const), value: valueArb }),
  fc.record({ key: keyArb, kind: fc.constant('list' as const), values: fc.uniqueArray(valueArb, { minLength: 1, maxLength: 3 }) }),
  fc.record({ key: keyArb, kind: fc.constant('gt' as const), bound: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ key: keyArb, kind: fc.constant('noteq' as const), value: valueArb }),
  fc.record({ key: keyArb, kind: fc.constant('exists' as const), present: fc.boolean() }),
);
const ruleArb: fc.Arbitrary<GenRule> = fc.record({
  risk: fc.integer({ min: 0, max: 100 }),
  // Blocking rules are rarer than scored ones, so most cases exercise the threshold.
  block: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  // One condition per key: `when` is a mapping, so a key can appear only once.
  conds: fc.uniqueArray(condArb, { minLength: 1, maxLength: 3, selector: (c) => c.key }),
});
const metadataArb = fc.dictionary(keyArb, valueArb, { maxKeys: 3 });
const policyArb = fc.record({
  threshold: fc.integer({ min: 1, max: 100 }),
  mode: fc.constantFrom('enforce' as const, 'monitor' as const),
  rules: fc.array(ruleArb, { maxLength: 8 }),
});

function matcherOf(c: Cond): Matcher {
  switch (c.kind) {
    case 'eq': return c.value;
    case 'list': return c.values;
    case 'gt': return { gt: c.bound };
    case 'noteq': return { not: c.value };
    case 'exists': return { exists: c.present };
  }
}

function toYaml(gen: { threshold: number; mode: 'enforce' | 'monitor'; rules: GenRule[] }): string {
  const rules = gen.rules.map((r, i) => ({
    id: `r${i}`,
    when: Object.fromEntries(r.conds.map((c) => [`metadata.${c.key}`, matcherOf(c)])),
    risk: r.risk,
    ...(r.block ? { action: 'block' as const, reason: `blocked by r${i}` } : {}),
  }));
  return policy().mode(gen.mode).blockThreshold(gen.threshold).catchAll().rule(...rules).yaml();
}

/** An independent statement of what each generated condition means. */
function condHolds(c: Cond, metadata: Record<string, MetadataValue>): boolean {
  const present = Object.hasOwn(metadata, c.key);
  const v = metadata[c.key];
  switch (c.kind) {
    case 'eq': return present && v === c.value;
    case 'list': return present && c.values.includes(v!);
    case 'gt': return present && typeof v === 'number' && v > c.bound;
    case 'noteq': return !(present && v === c.value);
    case 'exists': return present === c.present;
  }
}

function factsWith(metadata: Record<string, MetadataValue>): RequestFacts {
  return facts({ customer: 'globex', metadata });
}

const RUNS = { seed: 42, numRuns: 500 };

test('property: risk_score is in [0, 100] and equals min(100, sum of the matched rules\' risk)', (t) => {
  fc.assert(
    fc.property(policyArb, metadataArb, (gen, metadata) => {
      const p = compilePolicySource('generated.yaml', toYaml(gen));
      const d = evaluate(p, factsWith(metadata));
      const expected = gen.rules.map((r, i) => ({ id: `r${i}`, r })).filter(({ r }) => r.conds.every((c) => condHolds(c, metadata)));
      const sum = expected.reduce((s, { r }) => s + r.risk, 0);
      return (
        d.riskScore >= 0 &&
        d.riskScore <= 100 &&
        d.riskScore === Math.min(100, sum) &&
        JSON.stringify([...d.rules].sort()) === JSON.stringify(expected.map((e) => e.id).sort())
      );
    }),
    RUNS,
  );
  t.pass();
});

test('property: in enforce mode allowed === !violates, and violates exactly when a block rule matches or the threshold is reached', (t) => {
  fc.assert(
    fc.property(policyArb, metadataArb, (gen, metadata) => {
      const enforce = compilePolicySource('generated.yaml', toYaml({ ...gen, mode: 'enforce' }));
      const monitor = compilePolicySource('generated.yaml', toYaml({ ...gen, mode: 'monitor' }));
      const f = factsWith(metadata);
      const e = evaluate(enforce, f);
      const m = evaluate(monitor, f);
      const matched = gen.rules.filter((r) => r.conds.every((c) => condHolds(c, metadata)));
      const score = Math.min(100, matched.reduce((s, r) => s + r.risk, 0));
      const shouldViolate = score >= gen.threshold || matched.some((r) => r.block);
      return (
        e.allowed === !e.violates &&
        e.violates === shouldViolate &&
        m.allowed === true &&
        m.violates === e.violates &&
        m.riskScore === e.riskScore
      );
    }),
    RUNS,
  );
  t.pass();
});

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

test('property: evaluate is deterministic and does not mutate the facts', (t) => {
  const factsArb = fc.record({
    customer: fc.constantFrom('acme', 'globex', 'initech'),
    model: fc.constantFrom('gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small', null),
    operation: fc.constantFrom('chat.completions', 'embeddings', 'images.generations'),
    metadata: metadataArb,
    max_tokens: fc.option(fc.integer({ min: 1, max: 20_000 }), { nil: null }),
    stream: fc.boolean(),
  });
  const base = compile(ACME.rule(
    { id: 'r0', when: { 'metadata.a': [1, 'x'] }, risk: 40 },
    { id: 'r1', when: { 'metadata.b': { gt: 1 }, 'request.stream': true }, risk: 40 },
    { id: 'r2', when: { 'metadata.c': { exists: true } }, action: 'block' },
  ).yaml());
  fc.assert(
    fc.property(factsArb, (gen) => {
      const f = facts({
        customer: gen.customer,
        model: gen.model,
        operation: gen.operation,
        metadata: gen.metadata,
        request: { max_tokens: gen.max_tokens, stream: gen.stream },
      });
      const snapshot = structuredClone(f);
      // Frozen facts make any write throw (ESM is strict mode), so mutation cannot go unnoticed.
      deepFreeze(f);
      const first: Decision = evaluate(base, f);
      const second: Decision = evaluate(base, f);
      return JSON.stringify(first) === JSON.stringify(second) && JSON.stringify(f) === JSON.stringify(snapshot);
    }),
    RUNS,
  );
  t.pass();
});
