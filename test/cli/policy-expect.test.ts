import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { FIXTURE_POLICY, makeGatewayDir, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { lines, runCliAsync } from './support.js';

const dir = makeGatewayDir();
writeGatewayYaml(dir, 'http://127.0.0.1:9/v1');
writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const policyTest = (...args: string[]) =>
  runCliAsync(['policy', 'test', '--customer', 'acme', '--model', 'gpt-4o', '--operation', 'chat.completions', ...args], { cwd: dir, env: { PORT: '', GOVGATE_CONFIG: undefined } });

// The fixture policy blocks contains_pii=true for the openai provider (rule pii-to-external) and allows the rest.
const PII = ['--meta', 'contains_pii=true'];

test('--expect allow exits 0 when the policy allows', async (t) => {
  const r = await policyTest('--expect', 'allow');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^decision: +allow/m);
  t.is(r.stderr, '');
});

test('--expect block exits 0 when the policy blocks', async (t) => {
  const r = await policyTest(...PII, '--expect', 'block');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^decision: +block/m);
});

test('--expect allow exits 1 with one line naming what was expected and what was decided when the policy blocks', async (t) => {
  const r = await policyTest(...PII, '--expect', 'allow');
  t.is(r.status, 1);
  t.is(lines(r.stderr).length, 1, r.stderr);
  t.regex(r.stderr, /expected allow, but config\/policy\.yaml decided block \(.*pii-to-external.*\)/);
  t.regex(r.stdout, /^decision: +block/m, 'the decision is still printed');
});

test('--expect block exits 1 when the policy allows, with --json too', async (t) => {
  const r = await policyTest('--expect', 'block', '--json');
  t.is(r.status, 1);
  t.regex(r.stderr, /expected block, but config\/policy\.yaml decided allow/);
  t.true((JSON.parse(r.stdout) as { allowed: boolean }).allowed);
});

test('--expect takes only allow or block (exit 2)', async (t) => {
  const r = await policyTest('--expect', 'deny');
  t.is(r.status, 2);
  t.regex(r.stderr, /--expect must be allow or block, got "deny"/);
});
