import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { ConfigError, YamlSource } from '../../gateway/config/yaml-source.js';
import { GATEWAY_ID, readFleetConfig } from '../../gateway/config/fleet-config.js';
import { describeFleetError, fleetDatabaseUrl } from '../../gateway/fleet/fleet-database.js';
import { FIXTURE_POLICY } from '../helpers/gateway-harness.js';
import { runCli } from '../helpers/cli.js';

const BASE = `providers:
  - name: openai
    base_url: http://127.0.0.1:9/v1
`;

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function checkout(yaml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-fleet-config-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'config'));
  writeFileSync(path.join(dir, 'config/gateway.yaml'), yaml);
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  return dir;
}

function load(yaml: string) {
  return loadGatewayConfig('config/gateway.yaml', {}, checkout(yaml));
}

function fleetError(fleet: string, host?: () => string): string {
  const src = YamlSource.parse('config/gateway.yaml', `fleet:\n${fleet}`);
  try {
    readFleetConfig(src, (src.value() as { fleet: unknown }).fleet, host);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return 'no error';
}

test('without fleet: the gateway is single-node, as before', (t) => {
  t.is(load(BASE).fleet, null);
  t.is(load(`${BASE}fleet: {}\n`).fleet, null);
});

test('fleet.database_url_env and fleet.gateway_id are read into the frozen configuration', (t) => {
  const config = load(`${BASE}fleet:\n  database_url_env: DATABASE_URL\n  gateway_id: gw-1\n`);
  t.deepEqual(config.fleet, { databaseUrlEnv: 'DATABASE_URL', gatewayId: 'gw-1' });
  t.true(Object.isFrozen(config.fleet));
});

test('fleet.gateway_id defaults to the host name', (t) => {
  const config = load(`${BASE}fleet:\n  database_url_env: DATABASE_URL\n`);
  if (GATEWAY_ID.test(hostname())) t.is(config.fleet?.gatewayId, hostname());
  t.is(fleetError('  database_url_env: DATABASE_URL\n', () => 'a host with spaces'),
    `config/gateway.yaml:2:3: fleet: the host name "a host with spaces" is not a usable gateway id (${GATEWAY_ID.source}); set fleet.gateway_id`);
});

test('mistakes in fleet name the file, the position and the key', (t) => {
  t.is(fleetError('  database_url_env: DATABASE_URL\n  gateway_id: "gw 1"\n'),
    'config/gateway.yaml:3:15: fleet.gateway_id: must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit, got "gw 1"');
  t.regex(fleetError(`  database_url_env: DATABASE_URL\n  gateway_id: ${'g'.repeat(65)}\n`), /fleet\.gateway_id: must be 1 to 64/);
  t.regex(fleetError('  database_url_env: DATABASE_URL\n  gateway_id: -gw\n'), /fleet\.gateway_id: must be/);
  t.regex(fleetError('  database_url_env: postgres://u:p@db/govgate\n'), /^config\/gateway\.yaml:2:21: fleet\.database_url_env: must name an environment variable/);
  t.regex(fleetError('  gateway_id: gw-1\n'), /fleet\.gateway_id: is only used with fleet\.database_url_env/);
  t.regex(fleetError('  database_url: postgres://db\n'), /fleet\.database_url: unknown key \(expected one of: database_url_env, gateway_id\)/);
});

test('the URL comes from the variable; unset, empty or not a PostgreSQL URL fails naming the variable, never its value', (t) => {
  const fleet = { databaseUrlEnv: 'FLEET_DB', gatewayId: 'gw-1' };
  t.is(fleetDatabaseUrl(fleet, 'config/gateway.yaml', { FLEET_DB: 'postgres://db/govgate' }), 'postgres://db/govgate');
  for (const value of [undefined, '', '  ']) {
    t.throws(() => fleetDatabaseUrl(fleet, 'config/gateway.yaml', { FLEET_DB: value }), {
      message: "config/gateway.yaml: fleet.database_url_env: $FLEET_DB is unset or empty; set it to the fleet's PostgreSQL URL (postgres://…), or remove fleet.database_url_env for single-node mode",
    });
  }
  const wrong = t.throws(() => fleetDatabaseUrl(fleet, 'config/gateway.yaml', { FLEET_DB: 'mysql://u:secret@db' }));
  t.false(wrong.message.includes('secret'));
});

test('fleet errors are described without the URL', (t) => {
  t.is(describeFleetError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })), 'connection refused (ECONNREFUSED)');
  t.is(describeFleetError(new TypeError('Invalid URL postgres://u:secret@x')), 'TypeError');
});

test('serve and keys fail fast, naming the variable, when fleet.database_url_env is set and the variable is not', (t) => {
  const dir = checkout(`${BASE}fleet:\n  database_url_env: GOVGATE_TEST_FLEET_DB\n  gateway_id: gw-1\n`);
  const env = { GOVGATE_TEST_FLEET_DB: '', PORT: '' };
  for (const args of [['serve'], ['keys', 'list'], ['keys', 'create', '--customer', 'acme']]) {
    const r = runCli(args, { cwd: dir, env });
    t.is(r.status, 1, args.join(' '));
    t.is(r.stdout, '');
    t.regex(r.stderr, /^govgate: .*fleet\.database_url_env: \$GOVGATE_TEST_FLEET_DB is unset or empty/);
  }
});
