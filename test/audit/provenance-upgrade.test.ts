import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT, startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream } from '../helpers/mock-upstream.js';
import { runCli } from '../helpers/cli.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

/**
 * Issue 16, point 6: a file written by the version before provenance (schema 6:
 * no policy_hash, no policy_version, no audit_event) is migrated on first start
 * and still verifies end to end, old rows under their v1 record and new rows
 * under v2. The file is rebuilt from that version's own `sqlite3 .dump`, so its
 * hashes and anchors are the ones that code wrote, not recomputed here.
 */
const FIXTURE = path.join(REPO_ROOT, 'test/fixtures/audit-before-provenance.sql');

function oldTrail(): { dir: string; dbPath: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-upgrade-'));
  const dbPath = path.join(dir, 'audit.db');
  execFileSync('sqlite3', [dbPath], { input: readFileSync(FIXTURE) });
  execFileSync('sqlite3', [dbPath, 'PRAGMA journal_mode = WAL;']);
  return { dir, dbPath };
}

function verifyWith(h: Pick<Harness, 'dir'>): { status: number | null; stdout: string; stderr: string } {
  return runCli(['audit', 'verify'], { cwd: h.dir });
}

test('a trail written before provenance is migrated on first start and verifies end to end, old rows as v1 and new rows as v2', async (t) => {
  const old = oldTrail();
  const upstream = await startMockUpstream();
  let h: Harness | undefined;
  try {
    t.is(Number(execFileSync('sqlite3', [old.dbPath, 'PRAGMA user_version']).toString()), 6);
    const before = sqliteJson<{ n: number }>(old.dbPath, 'SELECT count(*) AS n FROM usagelog')[0]!.n;
    t.true(before > 0);

    h = await startHarness(upstream.url, { audit: { path: old.dbPath, retention_days: 30 } });
    const { key } = h.createKey('acme', 'after-upgrade');
    const client = h.sdk(key);
    for (let i = 0; i < 3; i++) await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
    await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'X-Governance-Metadata': '{"contains_pii":true}' } })
      .catch(() => undefined);
    await h.gateway.close();

    const columns = sqliteJson<{ name: string }>(old.dbPath, "SELECT name FROM pragma_table_info('usagelog') ORDER BY cid").map((c) => c.name);
    t.deepEqual(columns.slice(-4), ['prev_hash', 'hash', 'policy_hash', 'causes'], 'provenance comes after the contract and chain columns');
    const rows = sqliteJson<{ policy_hash: string | null; causes: string | null; allowed: number }>(old.dbPath, 'SELECT policy_hash, causes, allowed FROM usagelog ORDER BY rowid');
    t.is(rows.length, before + 4);
    t.true(rows.slice(0, before).every((r) => r.policy_hash === null && r.causes === null), 'old rows keep their columns as written');
    const fresh = rows.slice(before);
    const versions = sqliteJson<{ hash: string; text: string; path: string }>(old.dbPath, 'SELECT hash, text, path FROM policy_version');
    t.is(versions.length, 1);
    t.true(fresh.every((r) => r.policy_hash === versions[0]!.hash), 'new rows name the policy version in force');
    t.is(versions[0]!.text, readFileSync(h.policyFile, 'utf8'));
    t.deepEqual(fresh.slice(0, 3).map((r) => [r.allowed, r.causes]), [[1, '[]'], [1, '[]'], [1, '[]']]);
    t.is(fresh[3]!.allowed, 0);
    t.true(JSON.parse(fresh[3]!.causes!).length > 0, 'a refusal records its causes');

    const kinds = sqliteJson<{ kind: string }>(old.dbPath, 'SELECT kind FROM audit_event ORDER BY rowid').map((e) => e.kind);
    t.deepEqual(kinds, ['gateway.started', 'policy.loaded', 'gateway.stopped']);

    const verify = verifyWith(h);
    t.is(verify.status, 0, verify.stdout + verify.stderr);
    t.regex(verify.stdout, new RegExp(`audit trail intact: ${before + 4} decision rows, \\d+ outcome rows and 3 control events verified`));
  } finally {
    await h?.gateway.close();
    await upstream.close();
    rmSync(old.dir, { recursive: true, force: true });
  }
});

test('before its first start, the old file verifies read-only as it is', (t) => {
  const old = oldTrail();
  try {
    const cwd = mkdtempSync(path.join(tmpdir(), 'govgate-upgrade-cfg-'));
    try {
      const config = path.join(cwd, 'gateway.yaml');
      execFileSync('sh', ['-c', `printf 'providers:\\n  - name: openai\\n    base_url: http://127.0.0.1:9\\npolicy:\\n  path: ${path.join(REPO_ROOT, 'test/fixtures/policy.yaml')}\\naudit:\\n  path: ${old.dbPath}\\n  retention_days: 30\\n' > ${config}`]);
      const r = runCli(['audit', 'verify', '--config', config], { cwd });
      t.is(r.status, 0, r.stdout + r.stderr);
      t.regex(r.stdout, /audit trail intact: 12 decision rows, 9 outcome rows and 0 control events verified/);
      t.is(Number(execFileSync('sqlite3', [old.dbPath, 'PRAGMA user_version']).toString()), 6, 'verification does not migrate');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  } finally {
    rmSync(old.dir, { recursive: true, force: true });
  }
});
