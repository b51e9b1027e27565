import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { compilePolicySource, loadPolicyFile } from '../../gateway/policy/compile-policy.js';
import { FIXTURE_POLICY } from '../helpers/gateway-harness.js';
import { positionOf } from '../cli/support.js';

const FILE = 'config/policy.yaml';

const HEAD = `version: 1
mode: enforce
block_threshold: 70
customers:
  "*":
    models: ["*"]
    operations: ["*"]
`;

interface Expectation {
  /** The text the error must point at (its first occurrence after `after`, if given). */
  at: string;
  /** For an entry `key: value`, pointing at the key or at its value are both precise. */
  orAt?: string;
  nth?: number;
  /** Words the message must contain so the admin knows what is wrong. */
  mentions: string[];
}

function compileError(t: ExecutionContext, text: string): ConfigError {
  const err = t.throws(() => compilePolicySource(FILE, text));
  if (!(err instanceof ConfigError)) {
    t.fail(`expected a ConfigError, got ${String(err)}`);
    throw new Error('unreachable');
  }
  return err;
}

function assertLocated(t: ExecutionContext, text: string, expect: Expectation): void {
  const err = compileError(t, text);
  const m = /^(.+?):(\d+):(\d+): (.+)$/.exec(err.message);
  t.truthy(m, `message is FILE:LINE:COL: message, got ${JSON.stringify(err.message)}`);
  if (!m) return;
  t.is(m[1], FILE);
  t.false(err.message.includes('\n'), 'one line');
  const got = { line: Number(m[2]), col: Number(m[3]) };
  const candidates = [positionOf(text, expect.at, expect.nth ?? 0), ...(expect.orAt ? [positionOf(text, expect.orAt, expect.nth ?? 0)] : [])];
  t.true(
    candidates.some((c) => c.line === got.line && c.col === got.col),
    `${err.message} should point at ${candidates.map((c) => `${c.line}:${c.col}`).join(' or ')}`,
  );
  for (const word of expect.mentions) t.true(m[4]!.includes(word), `${JSON.stringify(m[4])} should mention ${word}`);
}

test('the shipped policy compiles', (t) => {
  const p = compilePolicySource(FILE, FIXTURE_POLICY);
  t.is(p.mode, 'enforce');
  t.is(p.blockThreshold, 70);
  t.deepEqual(p.rules.map((r) => r.id), ['pii-to-external', 'restricted-data', 'long-completions']);
});

test('a YAML syntax error points at the offending character', (t) => {
  const text = `${HEAD}rules:\n\t- id: tabbed\n`;
  assertLocated(t, text, { at: '\t', mentions: [] });
});

test('a YAML duplicate key points at the second occurrence', (t) => {
  const text = `${HEAD}mode: monitor\nrules: []\n`;
  assertLocated(t, text, { at: 'mode:', nth: 1, mentions: [] });
});

test('an unknown top-level field is rejected at its line', (t) => {
  const text = `version: 1\nblok_threshold: 70\n${HEAD.replace('version: 1\n', '')}rules: []\n`;
  assertLocated(t, text, { at: 'blok_threshold', orAt: '70', mentions: ['blok_threshold'] });
});

test('an unknown rule field is rejected at its line', (t) => {
  const text = `${HEAD}rules:
  - id: a
    when:
      model: gpt-4o
    severity: high
    risk: 10
`;
  assertLocated(t, text, { at: 'severity', orAt: 'high', mentions: ['severity'] });
});

test('an unknown customer field is rejected at its line', (t) => {
  const text = `${HEAD}  acme:
    models: ["gpt-4o"]
    max_token: 100
rules: []
`;
  assertLocated(t, text, { at: 'max_token', orAt: '100', mentions: ['max_token'] });
});

test('a value of the wrong type is rejected where it stands', (t) => {
  const text = HEAD.replace('block_threshold: 70', 'block_threshold: "high"') + 'rules: []\n';
  assertLocated(t, text, { at: 'block_threshold', orAt: '"high"', mentions: ['block_threshold'] });
});

test('an unknown mode is rejected', (t) => {
  const text = HEAD.replace('mode: enforce', 'mode: audit') + 'rules: []\n';
  assertLocated(t, text, { at: 'mode', orAt: 'audit', mentions: ['mode'] });
});

test('an unknown matcher is rejected at the matcher', (t) => {
  const text = `${HEAD}rules:
  - id: a
    when:
      model: {bogus: 1}
    risk: 10
`;
  assertLocated(t, text, { at: 'bogus', orAt: '1}', mentions: ['bogus'] });
});

test('an unknown matcher nested under not is rejected at the matcher', (t) => {
  const text = `${HEAD}rules:
  - id: a
    when:
      request.max_tokens:
        not: {greater: 5}
    risk: 10
`;
  assertLocated(t, text, { at: 'greater', orAt: '5}', mentions: ['greater'] });
});

test('a comparison with a non-number bound is rejected', (t) => {
  const text = `${HEAD}rules:
  - id: a
    when:
      request.max_tokens: {gt: many}
    risk: 10
`;
  assertLocated(t, text, { at: 'gt', orAt: 'many', mentions: ['gt'] });
});

for (const [label, field] of [
  ['metadata without a name', 'metadata'],
  ['metadata. with an empty name', 'metadata.'],
  ['an unknown field', 'foo'],
  ['an unknown request field', 'request.prompt'],
] as const) {
  test(`${label} in when is rejected at the field`, (t) => {
    const text = `${HEAD}rules:
  - id: ok
    when:
      model: gpt-4o
    risk: 5
  - id: a
    when:
      ${field}: x
    risk: 10
`;
    assertLocated(t, text, { at: `${field}: x`, orAt: 'x\n', mentions: [field] });
  });
}

test('a duplicate rule id is rejected at the second rule', (t) => {
  const text = `${HEAD}rules:
  - id: same
    when:
      model: gpt-4o
    risk: 10
  - id: same
    when:
      model: gpt-4o-mini
    risk: 20
`;
  assertLocated(t, text, { at: 'id: same', orAt: 'same', nth: 1, mentions: ['same'] });
});

test('a version other than 1 is rejected at the version', (t) => {
  const text = HEAD.replace('version: 1', 'version: 2') + 'rules: []\n';
  assertLocated(t, text, { at: 'version', orAt: '2', mentions: ['version'] });
});

test('loadPolicyFile names the file it was given, and a missing file is a ConfigError too', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-policy-'));
  try {
    const file = path.join(dir, 'policy.yaml');
    const text = `${HEAD}rules:\n  - id: a\n    when: {model: x}\n    colour: red\n`;
    writeFileSync(file, text);
    const err = t.throws(() => loadPolicyFile(file, 'shown/policy.yaml'), { instanceOf: ConfigError });
    const key = positionOf(text, 'colour');
    const value = positionOf(text, 'red');
    const m = /^shown\/policy\.yaml:(\d+):(\d+): .*colour/.exec(err?.message ?? '');
    t.truthy(m, err?.message);
    t.true([`${key.line}:${key.col}`, `${value.line}:${value.col}`].includes(`${m?.[1]}:${m?.[2]}`), err?.message);

    const missing = t.throws(() => loadPolicyFile(path.join(dir, 'nope.yaml'), 'nope.yaml'), { instanceOf: ConfigError });
    t.regex(missing?.message ?? '', /^nope\.yaml:\d+:\d+: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
