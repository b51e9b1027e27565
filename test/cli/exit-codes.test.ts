import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { FIXTURE_POLICY, makeGatewayDir, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { lines, runCliAsync } from './support.js';

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A checkout-like directory with config/gateway.yaml and the fixture policy; nothing here forwards a request. */
function checkout(): string {
  const dir = makeGatewayDir();
  dirs.push(dir);
  writeGatewayYaml(dir, 'http://127.0.0.1:9/v1');
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  return dir;
}

/** A directory with nothing in it: usage errors must be found before any configuration is looked for. */
function emptyDir(): string {
  const dir = makeGatewayDir();
  dirs.push(dir);
  rmSync(path.join(dir, 'config'), { recursive: true });
  return dir;
}

const cli = (cwd: string, ...args: string[]) => runCliAsync(args, { cwd, env: { PORT: '', GOVGATE_CONFIG: undefined, GOVGATE_ADMIN_TOKEN: undefined } });

const TEST_ARGS = ['policy', 'test', '--customer', 'acme', '--model', 'gpt-4o', '--operation', 'chat.completions'];

const USAGE_ERRORS: string[][] = [
  ['frobnicate'],
  [],
  ['--frobnicate'],
  ['--config'],
  ['serve', '--bogus'],
  ['serve', 'extra'],
  ['demo', '--port', 'eighty'],
  ['demo', '--port', '70000'],
  ['demo', '--config', 'config/gateway.yaml'],
  ['keys', 'frobnicate'],
  ['keys', '--bogus'],
  ['keys', 'create'],
  ['keys', 'create', '--customer'],
  ['keys', 'list', '--bogus'],
  ['keys', 'revoke'],
  ['keys', 'revoke', 'a', 'b'],
  ['policy'],
  ['policy', 'frobnicate'],
  ['policy', 'check', 'a.yaml', 'b.yaml'],
  ['policy', 'test', '--model', 'gpt-4o'],
  [...TEST_ARGS, '--expect', 'maybe'],
  [...TEST_ARGS, '--max-tokens', 'lots'],
  [...TEST_ARGS, '--meta', 'novalue'],
  [...TEST_ARGS, '--bogus'],
  ['cleanup-logs', 'abc'],
  ['cleanup-logs', '1'],
  ['cleanup-logs', '100', '200'],
  ['audit'],
  ['audit', 'frobnicate'],
  ['audit', 'verify', '--bogus'],
  ['audit', 'verify', 'extra'],
  ['audit', 'verify', '--against', 'not json'],
  ['backup', 'extra'],
  ['usage', '--since', 'forever'],
  ['usage', '--customer'],
  ['version', 'extra'],
];

for (const args of USAGE_ERRORS) {
  test(`usage error exits 2: govgate ${args.join(' ')}`, async (t) => {
    const r = await cli(checkout(), ...args);
    t.is(r.status, 2, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    if (args.length > 0) {
      t.is(lines(r.stderr).length, 1, `one line on stderr: ${r.stderr}`);
      t.false(r.stderr.includes('    at '), 'no stack trace');
    }
  });
}

// Where no configuration exists, a usage mistake is still a usage mistake (2), not "file not found" (1). Serve is left
// out: its arguments are parsed by serve-command.ts after the configuration is loaded.
for (const args of [['keys', 'create'], ['keys', 'list', '--bogus'], [...TEST_ARGS, '--expect', 'maybe'], ['usage', '--bogus'], ['backup', 'extra'], ['audit', 'verify', '--bogus'], ['cleanup-logs', 'abc']]) {
  test(`usage error exits 2 even without a configuration: govgate ${args.join(' ')}`, async (t) => {
    const r = await cli(emptyDir(), ...args);
    t.is(r.status, 2, r.stderr);
    t.notRegex(r.stderr, /file not found/);
  });
}

const FAILURES: { args: string[]; stderr: RegExp; setup?: (dir: string) => void }[] = [
  { args: ['keys', 'revoke', 'key_doesnotexist00'], stderr: /key_doesnotexist00/ },
  { args: ['audit', 'verify'], stderr: /no audit database/ },
  { args: ['usage'], stderr: /cannot open the audit database/ },
  { args: ['policy', 'check', 'drafts/missing.yaml'], stderr: /^drafts\/missing\.yaml:1:1: file not found/ },
  { args: ['--config', 'nope.yaml', 'keys', 'list'], stderr: /^nope\.yaml:1:1: file not found/ },
  { args: ['policy', 'check'], stderr: /^config\/policy\.yaml:\d+:\d+: /, setup: (dir) => writeFileSync(path.join(dir, 'config/policy.yaml'), 'version: 2\n') },
];

for (const { args, stderr, setup } of FAILURES) {
  test(`failure exits 1: govgate ${args.join(' ')}`, async (t) => {
    const dir = checkout();
    setup?.(dir);
    const r = await cli(dir, ...args);
    t.is(r.status, 1, r.stderr);
    t.regex(r.stderr, stderr);
    t.is(lines(r.stderr).length, 1, `one line on stderr: ${r.stderr}`);
  });
}

test('success exits 0: keys create, keys, keys list, policy check, policy test, help', async (t) => {
  const dir = checkout();
  const created = await cli(dir, 'keys', 'create', '--customer', 'acme', '--name', 'first');
  t.is(created.status, 0, created.stderr);
  for (const args of [['keys'], ['keys', 'list'], ['policy', 'check'], TEST_ARGS, ['help']]) {
    const r = await cli(dir, ...args);
    t.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  }
});

test('keys without a subcommand lists the keys, as keys list does, flags included', async (t) => {
  const dir = checkout();
  t.is((await cli(dir, 'keys', 'create', '--customer', 'acme', '--name', 'a')).status, 0);
  t.is((await cli(dir, 'keys', 'create', '--customer', 'globex', '--name', 'b')).status, 0);
  const [bare, list, bareJson, listJson] = await Promise.all([
    cli(dir, 'keys'),
    cli(dir, 'keys', 'list'),
    cli(dir, 'keys', '--customer', 'globex', '--json'),
    cli(dir, 'keys', 'list', '--customer', 'globex', '--json'),
  ]);
  t.is(bare.status, 0, bare.stderr);
  t.is(bare.stdout, list.stdout);
  t.is(lines(bare.stdout).length, 3, 'a header and two keys');
  t.regex(bare.stdout, /acme/);
  t.is(bareJson.status, 0, bareJson.stderr);
  t.is(bareJson.stdout, listJson.stdout);
  const keys = JSON.parse(bareJson.stdout) as { customer_id: string }[];
  t.deepEqual(keys.map((k) => k.customer_id), ['globex']);
});

test('a missing configuration file names the directory searched and --config', async (t) => {
  const dir = emptyDir();
  const r = await cli(dir, 'keys', 'list');
  t.is(r.status, 1);
  t.is(lines(r.stderr).length, 1, r.stderr);
  t.true(r.stderr.startsWith(`config/gateway.yaml:1:1: file not found (looked in ${path.join(dir, 'config')}, which does not exist)`), r.stderr);
  t.regex(r.stderr, /--config FILE/);
  t.regex(r.stderr, /\$GOVGATE_CONFIG/);
});

test('a missing policy file names the setting that points at it, for policy check, policy test and serve', async (t) => {
  const dir = checkout();
  rmSync(path.join(dir, 'config/policy.yaml'));
  for (const args of [['policy', 'check'], TEST_ARGS, ['serve']]) {
    const r = await cli(dir, ...args);
    t.is(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    t.is(lines(r.stderr).length, 1, r.stderr);
    t.is(r.stderr.trim(), `config/policy.yaml:1:1: file not found (looked in ${path.join(dir, 'config')}); this path is policy.path in config/gateway.yaml`);
  }
});
