import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { loadGatewayConfig, type GatewayConfig } from '../../gateway/config/gateway-config.js';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { FIXTURE_POLICY } from '../helpers/gateway-harness.js';
import { runCli } from '../helpers/cli.js';
import { lines, positionOf } from '../cli/support.js';

const FILE = 'config/gateway.yaml';

const VALID = `server:
  host: 127.0.0.1
  port: 8080
  max_body_bytes: 1048576
providers:
  - name: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    models: ["*"]
policy:
  path: config/policy.yaml
audit:
  path: data/audit.db
  retention_days: 90
  cleanup_schedule: "0 2 * * 0"
  on_write_failure: block
sentry:
  dsn_env: SENTRY_DSN
`;

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A directory laid out like a checkout, with `text` as config/gateway.yaml. */
function checkout(text: string, file = FILE): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-config-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
  mkdirSync(path.join(dir, 'config'), { recursive: true });
  writeFileSync(path.join(dir, file), text);
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  return dir;
}

function edit(from: string, to: string): string {
  if (!VALID.includes(from)) throw new Error(`fixture has no ${JSON.stringify(from)}`);
  return VALID.replace(from, to);
}

interface Located {
  line: number;
  col: number;
  key: string;
  problem: string;
}

/** Loads `text` and returns the parts of its one-line `FILE:LINE:COL: key: problem` error. */
function failure(t: ExecutionContext, text: string, env: NodeJS.ProcessEnv = {}): Located | undefined {
  const dir = checkout(text);
  const err = t.throws(() => loadGatewayConfig(FILE, env, dir), { instanceOf: ConfigError });
  if (!err) return undefined;
  t.false(err.message.includes('\n'), 'the message is one line');
  const m = /^config\/gateway\.yaml:(\d+):(\d+): (\S+): (.+)$/.exec(err.message);
  t.truthy(m, `expected "${FILE}:LINE:COL: key: problem", got ${JSON.stringify(err.message)}`);
  if (!m) return undefined;
  return { line: Number(m[1]), col: Number(m[2]), key: m[3]!, problem: m[4]! };
}

/** The error names `key` (as the last segment of its path) and points at the key or at its value. */
function assertNamesAndPoints(t: ExecutionContext, text: string, key: string, at: string[], env: NodeJS.ProcessEnv = {}): void {
  const got = failure(t, text, env);
  if (!got) return;
  t.regex(got.key, new RegExp(`(^|[.\\]])${key.replace(/[.[\]]/g, '\\$&')}$`), `key of ${JSON.stringify(got)}`);
  const candidates = at.map((needle) => positionOf(text, needle));
  t.true(
    candidates.some((c) => c.line === got.line && c.col === got.col),
    `${got.line}:${got.col} should be one of ${candidates.map((c) => `${c.line}:${c.col}`).join(', ')}`,
  );
}

test('the valid fixture loads', (t) => {
  const config = loadGatewayConfig(FILE, {}, checkout(VALID));
  t.is(config.server.port, 8080);
  t.is(config.providers.length, 1);
  t.is(config.providers[0]!.baseUrl.href, 'https://api.openai.com/v1');
  t.is(config.audit.cleanupSchedule, '0 2 * * 0');
});

test('an unknown key is named with its line and column', (t) => {
  assertNamesAndPoints(t, edit('  host: 127.0.0.1\n', '  host: 127.0.0.1\n  hots: example\n'), 'hots', ['hots', 'example']);
});

test('an unknown top-level key is named', (t) => {
  assertNamesAndPoints(t, `${VALID}listen: 9000\n`, 'listen', ['listen', '9000']);
});

test('a port of the wrong type is named', (t) => {
  assertNamesAndPoints(t, edit('port: 8080', 'port: "eighty"'), 'port', ['port', '"eighty"']);
});

test('a port out of range is named', (t) => {
  assertNamesAndPoints(t, edit('port: 8080', 'port: 70000'), 'port', ['port', '70000']);
});

test('a headers timeout longer than the request timeout is named', (t) => {
  const text = edit('  max_body_bytes: 1048576\n', '  max_body_bytes: 1048576\n  headers_timeout_ms: 60000\n  request_timeout_ms: 30000\n');
  assertNamesAndPoints(t, text, 'headers_timeout_ms', ['headers_timeout_ms', '60000']);
});

test('client timeouts and the drain deadline default to values fit for slow reasoning models', (t) => {
  const { server } = loadGatewayConfig(FILE, {}, checkout(VALID));
  t.deepEqual([server.headersTimeoutMs, server.requestTimeoutMs, server.drainTimeoutMs], [10_000, 300_000, 30_000]);
});

test('an invalid cron expression is named', (t) => {
  assertNamesAndPoints(t, edit('cleanup_schedule: "0 2 * * 0"', 'cleanup_schedule: "every sunday"'), 'cleanup_schedule', ['cleanup_schedule', '"every sunday"']);
});

test('a base_url that is not a URL is named', (t) => {
  assertNamesAndPoints(t, edit('base_url: https://api.openai.com/v1', 'base_url: not a url'), 'base_url', ['base_url', 'not a url']);
});

test('a base_url that is not http(s) is named', (t) => {
  assertNamesAndPoints(t, edit('base_url: https://api.openai.com/v1', 'base_url: ftp://files.example.com/v1'), 'base_url', ['base_url', 'ftp://']);
});

test('an unknown on_write_failure is named', (t) => {
  assertNamesAndPoints(t, edit('on_write_failure: block', 'on_write_failure: ignore'), 'on_write_failure', ['on_write_failure', 'ignore']);
});

test('admin.token_env and sentry.dsn_env must name a variable: a secret pasted there is refused, not echoed', (t) => {
  const token = 'a'.repeat(40) + '-pasted-token';
  for (const [section, key] of [['admin', 'token_env'], ['sentry', 'dsn_env']] as const) {
    const text = section === 'sentry' ? edit('dsn_env: SENTRY_DSN', `dsn_env: "${token}"`) : `${VALID}admin:\n  token_env: "${token}"\n`;
    assertNamesAndPoints(t, text, key, [key, `"${token}"`]);
    const got = failure(t, text);
    t.regex(got?.problem ?? '', /^must name an environment variable/);
    t.false(got?.problem.includes(token), 'the secret is not echoed');
  }
});

test('with several mistakes the port is still reported before the providers, and the providers before server.host', (t) => {
  const twoMistakes = edit('port: 8080', 'port: "eighty"').replace('  - name: openai', '  - name: openai\n    bogus: 1');
  t.is(failure(t, twoMistakes)?.key, 'server.port');
  const hostAndProviders = edit('host: 127.0.0.1', 'host: 12').replace('  - name: openai', '  - name: openai\n    bogus: 1');
  t.regex(failure(t, hostAndProviders)?.key ?? '', /^providers/);
});

test('missing providers are named', (t) => {
  const text = VALID.replace(/providers:\n(?: {2}.*\n)+/, '');
  t.false(text.includes('providers'));
  const got = failure(t, text);
  t.is(got?.key, 'providers');
});

test('an api_key written into the YAML is an unknown key, and the secret is not echoed', (t) => {
  const secret = 'sk-live-DoNotEchoThis0123456789';
  const text = edit('    api_key_env: OPENAI_API_KEY\n', `    api_key: ${secret}\n`);
  assertNamesAndPoints(t, text, 'api_key', ['api_key', secret]);
  const err = t.throws(() => loadGatewayConfig(FILE, {}, checkout(text)));
  t.false(err?.message.includes(secret), 'an error about a secret must not print the secret');
});

test('$PORT overrides server.port; an invalid $PORT is an error naming server.port', (t) => {
  const dir = checkout(VALID);
  t.is(loadGatewayConfig(FILE, {}, dir).server.port, 8080);
  t.is(loadGatewayConfig(FILE, { PORT: '9191' }, dir).server.port, 9191);
  t.is(loadGatewayConfig(FILE, { PORT: '0' }, dir).server.port, 0);
  const err = t.throws(() => loadGatewayConfig(FILE, { PORT: 'eighty' }, dir), { instanceOf: ConfigError });
  t.regex(err?.message ?? '', /^config\/gateway\.yaml:\d+:\d+: server\.port: .*PORT/);
});

test('relative paths resolve against the cwd argument, absolute ones stay as they are', (t) => {
  const dir = checkout(VALID);
  // The test process runs elsewhere, so a path resolved against process.cwd() would differ.
  t.not(process.cwd(), dir);
  const config = loadGatewayConfig(FILE, {}, dir);
  t.is(config.policy.path, path.join(dir, 'config/policy.yaml'));
  t.is(config.audit.path, path.join(dir, 'data/audit.db'));

  const elsewhere = path.join(tmpdir(), 'govgate-absolute', 'audit.db');
  const abs = loadGatewayConfig(FILE, {}, checkout(edit('path: data/audit.db', `path: ${elsewhere}`)));
  t.is(abs.audit.path, elsewhere);
});

function assertDeeplyFrozen(t: ExecutionContext, value: unknown, at: string): void {
  if (typeof value !== 'object' || value === null || value instanceof URL) return;
  t.true(Object.isFrozen(value), `${at} is frozen`);
  for (const [k, inner] of Object.entries(value)) assertDeeplyFrozen(t, inner, `${at}.${k}`);
}

test('the loaded configuration is deeply frozen', (t) => {
  const config = loadGatewayConfig(FILE, {}, checkout(VALID));
  assertDeeplyFrozen(t, config, 'config');
  t.throws(() => {
    (config.server as { port: number }).port = 1;
  }, { instanceOf: TypeError });
  t.throws(() => {
    (config.providers as GatewayConfig['providers'][number][]).push(config.providers[0]!);
  }, { instanceOf: TypeError });
  t.throws(() => {
    (config.providers[0] as { name: string }).name = 'other';
  }, { instanceOf: TypeError });
  t.is(config.server.port, 8080);
});

/** What every CLI failure must look like: one line on stderr, non-zero, no stack trace. */
function assertOneLineFailure(t: ExecutionContext, result: { status: number | null; stderr: string }): string {
  t.not(result.status, 0);
  t.not(result.status, null);
  t.false(result.stderr.includes('    at '), `no stack trace: ${result.stderr}`);
  const errLines = lines(result.stderr);
  t.is(errLines.length, 1, `exactly one line on stderr: ${JSON.stringify(result.stderr)}`);
  return errLines[0] ?? '';
}

test('serve with a bad config exits non-zero with one line naming file and key', (t) => {
  const dir = checkout(edit('port: 8080', 'port: "eighty"'));
  const line = assertOneLineFailure(t, runCli(['serve'], { cwd: dir, env: { PORT: '' } }));
  t.true(line.includes(FILE), line);
  t.regex(line, /\bport\b/);
  t.regex(line, /config\/gateway\.yaml:\d+:\d+: /);
});

test('serve --config with an unknown key names that file and key', (t) => {
  const file = 'conf/alt-gateway.yaml';
  const dir = checkout(edit('  retention_days: 90\n', '  retention: 90\n'), file);
  const line = assertOneLineFailure(t, runCli(['serve', '--config', file], { cwd: dir, env: { PORT: '' } }));
  t.true(line.includes(file), line);
  t.regex(line, /\bretention\b/);
});

test('serve without a config file says which file is missing', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-config-'));
  dirs.push(dir);
  const line = assertOneLineFailure(t, runCli(['serve'], { cwd: dir, env: { PORT: '' } }));
  t.true(line.includes(FILE), line);
});
