import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { openDatabase } from '../../gateway/store/connection.js';
import { makeGatewayDir, FIXTURE_POLICY, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { runCli, startServe, type ServeProcess } from '../helpers/cli.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';
import { askCheck, lines, poll } from './support.js';

let upstream: MockUpstream;
const dirs: string[] = [];
const serves: ServeProcess[] = [];

const ENV = { OPENAI_API_KEY: UPSTREAM_SECRET, PORT: '' };

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  for (const s of serves) if (s.child.exitCode === null && s.child.signalCode === null) await s.stop('SIGKILL');
  await upstream?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory laid out like a checkout, with no data/ yet; the config optionally moved away from its default path. */
function checkout(configAt = 'config/gateway.yaml'): string {
  const dir = makeGatewayDir();
  dirs.push(dir);
  const written = writeGatewayYaml(dir, upstream.url);
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  if (configAt !== 'config/gateway.yaml') {
    mkdirSync(path.dirname(path.join(dir, configAt)), { recursive: true });
    renameSync(written, path.join(dir, configAt));
  }
  return dir;
}

async function serve(dir: string, args: string[] = []): Promise<ServeProcess> {
  const s = await startServe({ cwd: dir, env: ENV, args });
  serves.push(s);
  return s;
}

/** The printed `npx govgate keys create …` line, as the words an admin would run. */
function hintArgs(t: ExecutionContext, stderr: string): string[] {
  const hint = lines(stderr).map((l) => l.trim()).find((l) => l.startsWith('npx govgate keys create --customer '));
  t.truthy(hint, `stderr should show an "npx govgate keys create --customer …" line:\n${stderr}`);
  const words = (hint ?? '').split(/\s+/);
  t.deepEqual(words.slice(0, 2), ['npx', 'govgate']);
  return words.slice(2);
}

/** Runs the hint in the checkout and proves the key it prints is accepted by the running gateway. */
async function assertHintWorks(t: ExecutionContext, dir: string, s: ServeProcess, args: string[]): Promise<void> {
  const created = runCli(args, { cwd: dir, env: ENV });
  t.is(created.status, 0, `the printed command failed: ${created.stderr}`);
  const key = lines(created.stdout).at(-1)?.trim() ?? '';
  t.regex(key, /^gg_[0-9A-Za-z]{38}$/);
  const accepted = await poll(async () => ((await askCheck(s.url, key, { model: 'gpt-4o-mini', operation: 'chat.completions' })).status === 200 ? true : undefined), 1500);
  t.true(accepted, 'the key from the printed command was not accepted by the running gateway within 1.5 s');
}

test('serve creates data/audit.db, answers /healthz, prints a working keys create command, and exits 0 on SIGTERM', async (t) => {
  const dir = checkout();
  const dbPath = path.join(dir, 'data/audit.db');
  t.false(existsSync(dbPath));
  const s = await serve(dir);

  t.true(existsSync(dbPath), 'data/audit.db is created on first start');
  const health = await fetch(`${s.url}/healthz`);
  t.is(health.status, 200);
  await health.arrayBuffer();

  await assertHintWorks(t, dir, s, hintArgs(t, s.stderr()));
  t.false(s.stderr().includes('    at '));
  t.is(await s.stop('SIGTERM'), 0);
});

test('with a config outside the default path the printed command carries --config FILE, and serve exits 0 on SIGINT', async (t) => {
  const configFile = 'deploy/gateway.yaml';
  const dir = checkout(configFile);
  t.false(existsSync(path.join(dir, 'config/gateway.yaml')));
  const s = await serve(dir, ['--config', configFile]);

  const args = hintArgs(t, s.stderr());
  const at = args.indexOf('--config');
  t.true(at !== -1 && args[at + 1] === configFile, `the command names the config: ${args.join(' ')}`);
  await assertHintWorks(t, dir, s, args);
  t.is(await s.stop('SIGINT'), 0);
});

test('an unknown command is one line on stderr and a non-zero exit, without a stack trace', (t) => {
  const r = runCli(['frobnicate'], { cwd: checkout(), env: ENV });
  t.not(r.status, 0);
  t.not(r.status, null);
  t.false(r.stderr.includes('    at '), r.stderr);
  t.is(lines(r.stderr).length, 1, r.stderr);
  t.regex(r.stderr, /frobnicate/);
});

function insertAged(dbPath: string, table: 'usagelog' | 'usagelog_outcome', prefix: string, count: number, age: string): void {
  const stamp = `strftime('%Y-%m-%d %H:%M:%f', 'now', '${age}')`;
  const values = Array.from({ length: count }, (_, i) =>
    table === 'usagelog'
      ? `('${prefix}-${i}', 'acme', 'key_x', 'gpt-4o-mini', 'chat.completions', '{}', 0, 1, 'allowed', ${stamp})`
      : `('${prefix}-${i}', 200, 12.5, ${stamp})`,
  );
  const columns = table === 'usagelog'
    ? '(id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at)'
    : '(log_id, status, duration_ms, created_at)';
  const r = sqliteRaw(dbPath, `INSERT INTO ${table} ${columns} VALUES ${values.join(', ')};`);
  if (r.status !== 0) throw new Error(`insert into ${table} failed: ${r.stderr}`);
}

test('cleanup-logs DAYS deletes the rows older than DAYS and prints how many', (t) => {
  const dir = checkout();
  writeGatewayYaml(dir, upstream.url, { audit: { retention_days: 30 } });
  const dbPath = path.join(dir, 'data/audit.db');
  openDatabase(dbPath, { synchronous: 'NORMAL' }).close();
  insertAged(dbPath, 'usagelog', 'old', 6, '-45 days');
  insertAged(dbPath, 'usagelog', 'edge-old', 1, '-31 days');
  insertAged(dbPath, 'usagelog', 'recent', 3, '-10 days');
  insertAged(dbPath, 'usagelog', 'edge-recent', 1, '-29 days');
  insertAged(dbPath, 'usagelog_outcome', 'old', 5, '-45 days');
  insertAged(dbPath, 'usagelog_outcome', 'recent', 4, '-1 days');

  const r = runCli(['cleanup-logs', '30'], { cwd: dir, env: ENV });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /\b7\b/, `prints the 7 deleted rows: ${r.stdout}`);

  const left = sqliteJson<{ id: string }>(dbPath, 'SELECT id FROM usagelog ORDER BY id').map((row) => row.id);
  t.deepEqual(left, ['edge-recent-0', 'recent-0', 'recent-1', 'recent-2']);
  const outcomes = sqliteJson<{ n: number }>(dbPath, 'SELECT COUNT(*) AS n FROM usagelog_outcome')[0]!.n;
  t.is(outcomes, 4, 'outcome rows older than the window go too');
});
