import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { openDatabase } from '../../gateway/store/connection.js';
import { makeGatewayDir, REPO_ROOT, FIXTURE_POLICY, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { sqliteRaw } from '../helpers/sqlite-cli.js';
import { lines, positionOf, usagelogCount } from './support.js';

// Nothing here forwards a request, so the provider never has to answer.
const UNUSED_UPSTREAM = 'http://127.0.0.1:9/v1';

const BAD_POLICY = `version: 1
customers:
  "*":
    models: ["*"]
rules:
  - id: a
    when:
      model: {bogus: 1}
    risk: 10
`;

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A checkout-like directory with config/gateway.yaml and the shipped policy. */
function checkout(): string {
  const dir = makeGatewayDir();
  dirs.push(dir);
  writeGatewayYaml(dir, UNUSED_UPSTREAM);
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  return dir;
}

function cli(cwd: string, ...args: string[]): CliResult {
  return runCli(args, { cwd, env: { PORT: '' } });
}

/** The `FILE:LINE:COL: message` lines of a failed check, from either stream. */
function locatedLines(r: CliResult, fileSuffix: string): { file: string; line: number; col: number; message: string }[] {
  const escaped = fileSuffix.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const re = new RegExp(`^(\\S*${escaped}):(\\d+):(\\d+): (.+)$`);
  return lines(`${r.stdout}\n${r.stderr}`)
    .map((l) => re.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ file: m[1]!, line: Number(m[2]), col: Number(m[3]), message: m[4]! }));
}

function assertPointsAtBogus(t: ExecutionContext, r: CliResult, fileSuffix: string): void {
  t.is(r.status, 1, `exit 1 for an invalid policy; stderr: ${r.stderr}`);
  t.false(`${r.stdout}${r.stderr}`.includes('    at '), 'no stack trace');
  const located = locatedLines(r, fileSuffix);
  t.true(located.length >= 1, `expected lines starting "${fileSuffix}:LINE:COL: message", got stdout=${JSON.stringify(r.stdout)} stderr=${JSON.stringify(r.stderr)}`);
  const key = positionOf(BAD_POLICY, 'bogus');
  const value = positionOf(BAD_POLICY, '1}');
  const first = located[0];
  if (!first) return;
  t.true([`${key.line}:${key.col}`, `${value.line}:${value.col}`].includes(`${first.line}:${first.col}`), `${first.line}:${first.col} points at the bogus matcher`);
  t.regex(first.message, /bogus/);
}

test('policy check accepts the shipped config/policy.yaml', (t) => {
  const r = cli(REPO_ROOT, 'policy', 'check', 'config/policy.yaml');
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr.trim(), '');
});

test('policy check FILE exits 1 with FILE:LINE:COL: message lines for an invalid policy', (t) => {
  const dir = checkout();
  mkdirSync(path.join(dir, 'drafts'));
  writeFileSync(path.join(dir, 'drafts/bad.yaml'), BAD_POLICY);
  const r = cli(dir, 'policy', 'check', 'drafts/bad.yaml');
  assertPointsAtBogus(t, r, 'drafts/bad.yaml');
  t.is(locatedLines(r, 'drafts/bad.yaml')[0]?.file, 'drafts/bad.yaml', 'FILE is the path as the admin typed it');
});

test('policy check without FILE checks the policy the configuration points at', (t) => {
  const dir = checkout();
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies/main.yaml'), BAD_POLICY);
  // config/policy.yaml stays valid, so an error located in policies/main.yaml proves the config's path was read.
  const config = writeGatewayYaml(dir, UNUSED_UPSTREAM);
  const text = JSON.parse(readFileSync(config, 'utf8')) as { policy: { path: string } };
  text.policy.path = 'policies/main.yaml';
  writeFileSync(config, JSON.stringify(text, null, 2));
  assertPointsAtBogus(t, cli(dir, 'policy', 'check'), 'policies/main.yaml');
});

test('policy check without FILE exits 0 when the configured policy is valid', (t) => {
  const r = cli(checkout(), 'policy', 'check');
  t.is(r.status, 0, r.stderr);
});

interface PolicyTestJson {
  allowed: boolean;
  risk_score: number;
  reason: string;
  rules: string[];
}

test('policy test reports the decision of the configured policy and writes no audit row', (t) => {
  const dir = checkout();
  const dbPath = path.join(dir, 'data/audit.db');
  // An audit database with one row in it, so "no new row" is measured against a real baseline.
  openDatabase(dbPath, { synchronous: 'NORMAL' }).close();
  const seeded = sqliteRaw(dbPath, `INSERT INTO usagelog (id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at)
    VALUES ('00000000-0000-4000-8000-000000000001', 'acme', 'key_x', 'gpt-4o', 'chat.completions', '{}', 0, 1, 'allowed', '2024-01-01 00:00:00.000')`);
  t.is(seeded.status, 0, seeded.stderr);
  t.is(usagelogCount(dbPath), 1);

  const r = cli(dir, 'policy', 'test', '--customer', 'acme', '--model', 'gpt-4o', '--operation', 'chat.completions', '--meta', 'contains_pii=true', '--json');
  t.is(r.status, 0, r.stderr);
  const decision = JSON.parse(r.stdout) as PolicyTestJson;
  t.false(decision.allowed);
  t.is(decision.risk_score, 90);
  t.deepEqual(decision.rules, ['pii-to-external']);
  t.regex(decision.reason, /pii-to-external/);
  t.is(usagelogCount(dbPath), 1, 'policy test must not write an audit row');
});

test('policy test names the blocking rule with its reason', (t) => {
  const dir = checkout();
  const blocked = cli(dir, 'policy', 'test', '--customer', 'acme', '--model', 'gpt-4o-mini', '--operation', 'chat.completions',
    '--meta', 'data_classification=restricted', '--meta', 'contains_pii=false', '--json');
  t.is(blocked.status, 0, blocked.stderr);
  const decision = JSON.parse(blocked.stdout) as PolicyTestJson;
  t.false(decision.allowed);
  t.deepEqual(decision.rules, ['restricted-data']);
  t.true(decision.reason.includes('rule restricted-data: Restricted data may not be sent to any model'), decision.reason);

  // Run in a fresh checkout: policy test must not need, or create, any audit rows.
  const dbPath = path.join(dir, 'data/audit.db');
  t.true(!existsSync(dbPath) || usagelogCount(dbPath) === 0, 'policy test must not write an audit row');
});
