import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { applicableLimits } from '../../gateway/policy/applicable-limits.js';
import { goDuration } from '../../gateway/limits/ratelimit-headers.js';
import { positionOf } from '../cli/support.js';
import { policy } from '../helpers/policy-builder.js';

const FILE = 'config/policy.yaml';

/** Written by hand: the tests that use it are about where in the text an error is reported. */
function withCustomers(customers: string): string {
  return `version: 1
customers:
${customers}rules: []
`;
}

/** The error points at the entry `at`: its key, its value on the same line, or its nested mapping on the next. */
function assertLocated(t: ExecutionContext, text: string, at: string, mentions: string[]): void {
  const err = t.throws(() => compilePolicySource(FILE, text), { instanceOf: ConfigError });
  if (!err) return;
  const key = positionOf(text, at);
  const m = /^config\/policy\.yaml:(\d+):(\d+): /.exec(err.message);
  const line = Number(m?.[1]);
  const col = Number(m?.[2]);
  t.true((line === key.line && col >= key.col) || line === key.line + 1, `${err.message} should point at ${key.line}:${key.col}`);
  for (const word of mentions) t.true(err.message.includes(word), `${err.message} should mention ${word}`);
}

test('limits compile per customer and per key into frozen objects', (t) => {
  const p = compilePolicySource(FILE, policy().catchAll().customer('acme', {
    requests_per_minute: 60,
    tokens_per_minute: 10000,
    tokens_per_day: 200000,
    tokens_per_month: 5000000,
    keys: { key_abc: { requests_per_minute: 5 } },
  }).yaml());
  const acme = p.customers.get('acme')!;
  t.deepEqual({ ...acme.limits }, { requests_per_minute: 60, tokens_per_minute: 10000, tokens_per_day: 200000, tokens_per_month: 5000000 });
  t.deepEqual({ ...acme.keyLimits.get('key_abc') }, { requests_per_minute: 5 });
  t.true(Object.isFrozen(acme.limits));
  t.true(Object.isFrozen(acme.keyLimits.get('key_abc')));
  t.deepEqual(applicableLimits(p, 'acme', 'key_abc').map((l) => `${l.kind} ${l.scope} ${l.id} ${l.limit}`), [
    'requests_per_minute key key_abc 5',
    'requests_per_minute customer acme 60',
    'tokens_per_minute customer acme 10000',
    'tokens_per_day customer acme 200000',
    'tokens_per_month customer acme 5000000',
  ]);
  t.deepEqual(applicableLimits(p, 'someone-else', 'key_x'), [], '"*" sets no limits here');
});

test('limits under "*" apply to each customer it covers, on its own counter', (t) => {
  const p = compilePolicySource(FILE, policy().catchAll({ models: ['*'], operations: ['*'], requests_per_minute: 7 }).yaml());
  t.deepEqual(applicableLimits(p, 'anyone', 'key_1'), [{ kind: 'requests_per_minute', scope: 'customer', id: 'anyone', limit: 7 }]);
});

test('a limit that is not a positive integer is rejected where it stands', (t) => {
  assertLocated(t, withCustomers('  acme:\n    requests_per_minute: 0\n'), 'requests_per_minute', ['customers.acme.requests_per_minute', 'integer']);
  assertLocated(t, withCustomers('  acme:\n    tokens_per_day: lots\n'), 'tokens_per_day', ['customers.acme.tokens_per_day', '"lots"']);
  assertLocated(t, withCustomers('  acme:\n    tokens_per_month: 1.5\n'), 'tokens_per_month', ['tokens_per_month']);
});

test('a misspelt limit is an unknown key naming the ones allowed', (t) => {
  assertLocated(t, withCustomers('  acme:\n    requests_per_min: 10\n'), 'requests_per_min', ['unknown key', 'requests_per_minute']);
});

test('key limits are validated: the id, the keys, and at least one limit', (t) => {
  assertLocated(t, withCustomers('  acme:\n    keys:\n      "not a key!":\n        requests_per_minute: 1\n'), '"not a key!"', ['not a key id']);
  assertLocated(t, withCustomers('  acme:\n    keys:\n      key_a:\n        rpm: 3\n'), 'rpm', ['customers.acme.keys.key_a.rpm', 'unknown key']);
  assertLocated(t, withCustomers('  acme:\n    keys:\n      key_a: {}\n'), 'key_a', ['sets no limit']);
  assertLocated(t, withCustomers('  acme:\n    keys: [key_a]\n'), 'keys', ['customers.acme.keys', 'mapping']);
});

function gatewayYaml(limits: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-limits-'));
  mkdirSync(path.join(dir, 'config'));
  writeFileSync(path.join(dir, 'config/gateway.yaml'), `providers:\n  - name: openai\n    base_url: http://127.0.0.1:9/v1\n${limits}`);
  return dir;
}

function configError(t: ExecutionContext, limits: string): string {
  const dir = gatewayYaml(limits);
  try {
    const err = t.throws(() => loadGatewayConfig('config/gateway.yaml', {}, dir), { instanceOf: ConfigError });
    return err?.message ?? '';
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('gateway.yaml limits: defaults to memory, blocks on store failure, reserves 1024 tokens', (t) => {
  const dir = gatewayYaml('');
  try {
    t.deepEqual(loadGatewayConfig('config/gateway.yaml', {}, dir).limits, { store: 'memory', redisUrl: null, redisPasswordEnv: null, onStoreFailure: 'block', defaultTokenReservation: 1024 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gateway.yaml limits: mistakes are named with file, line and key', (t) => {
  t.regex(configError(t, 'limits:\n  store: mongo\n'), /^config\/gateway\.yaml:5:10: limits\.store: must be one of memory \| redis/);
  t.regex(configError(t, 'limits:\n  store: redis\n'), /limits\.redis_url: is required/);
  t.regex(configError(t, 'limits:\n  store: redis\n  redis_url: http://x\n'), /limits\.redis_url: must be a redis:\/\//);
  const secret = configError(t, 'limits:\n  store: redis\n  redis_url: redis://:hunter2@127.0.0.1:6379\n');
  t.regex(secret, /must not hold a password; .*redis_password_env/);
  t.false(secret.includes('hunter2'), 'the password is not echoed');
  t.regex(configError(t, 'limits:\n  redis_url: redis://127.0.0.1\n'), /only used with limits\.store: redis/);
  t.regex(configError(t, 'limits:\n  on_store_failure: ignore\n'), /limits\.on_store_failure: must be one of block \| allow/);
  t.regex(configError(t, 'limits:\n  default_token_reservation: -1\n'), /limits\.default_token_reservation/);
});

test('reset durations are written the way OpenAI writes them', (t) => {
  t.is(goDuration(20), '20ms');
  t.is(goDuration(1000), '1s');
  t.is(goDuration(360_000), '6m0s');
  t.is(goDuration(3_723_500), '1h2m3.5s');
});
