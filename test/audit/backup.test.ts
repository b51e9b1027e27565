import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { backupAuditDatabase, snapshotName } from '../../gateway/audit/backup.js';
import { AuditWriter } from '../../gateway/audit/audit-writer.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { sqliteTime } from '../../gateway/store/sqlite-time.js';
import { StoreFile } from '../../gateway/store/store-file.js';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { runCli, startServe, type ServeProcess } from '../helpers/cli.js';
import { errorLogs, makeGatewayDir, FIXTURE_POLICY, startHarness, UPSTREAM_SECRET, writeGatewayYaml, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';
import { startSentryIngest, type SentryIngest } from '../helpers/sentry-ingest.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';

const SNAPSHOT = /^audit-\d{4}-\d{2}-\d{2}T\d{6}(\.\d{3})?Z\.db$/;

let upstream: MockUpstream;
const cleanups: (() => Promise<unknown> | void)[] = [];

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
  await upstream?.close();
});

// The tests that count seconds (the schedules) or need requests answered during a backup are serial, so that no
// other test's bulk inserts or synchronous CLI runs, which block this process, run meanwhile.

/**
 * `count` decision rows, hash-chained by the gateway's own writer on a
 * connection of the test's (the chain is extended under the write lock, so a
 * gateway writing to the same file meanwhile is fine).
 */
async function insertRows(dbPath: string, count: number): Promise<void> {
  const db = openDatabase(dbPath, { synchronous: 'NORMAL' });
  try {
    const writer = new AuditWriter(db, new StoreFile(dbPath), { onCommit() {}, onFailure() {} });
    const now = Date.now();
    for (let i = 1; i <= count; i += 1000) {
      const turn: Promise<void>[] = [];
      for (let j = i; j < Math.min(i + 1000, count + 1); j++) {
        turn.push(writer.record({
          id: `seed-${j}`, customer_id: 'acme', api_key_id: 'key_seed', model: 'gpt-4o-mini', operation: 'chat.completions',
          meta: `{"metadata":{},"stream":false,"body_bytes":${j}}`, risk_score: j % 100, allowed: j % 7 === 0 ? 0 : 1,
          reason: j % 7 === 0 ? 'rule restricted-data: no' : 'allowed', created_at: sqliteTime(new Date(now - (count - j) * 1000)),
          policy_hash: 'a'.repeat(64), causes: j % 7 === 0 ? '[{"kind":"rule","rule":"restricted-data"}]' : '[]',
        }));
      }
      await Promise.all(turn);
    }
  } finally {
    db.close();
  }
}

function integrity(file: string): string {
  return sqliteRaw(file, 'PRAGMA integrity_check;').stdout.trim();
}

function countRows(file: string): number {
  return sqliteJson<{ n: number }>(file, 'SELECT count(*) AS n FROM usagelog')[0]!.n;
}

function snapshotsIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => SNAPSHOT.test(f)).sort() : [];
}

async function harness(opts: Parameters<typeof startHarness>[1] = {}): Promise<Harness> {
  const gw = await startHarness(upstream.url, opts);
  cleanups.push(() => gw.close());
  return gw;
}

async function until<T>(probe: () => T | undefined | false, timeoutMs: number): Promise<T | undefined> {
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('govgate backup writes a verified snapshot with every row and prints its path', async (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  writeGatewayYaml(dir, upstream.url);
  seedKeys(dir, ['acme']);
  await insertRows(path.join(dir, 'data/audit.db'), 5000);

  const r = runCli(['backup'], { cwd: dir });
  t.is(r.status, 0, r.stderr);
  const printed = r.stdout.trim().split('\n').at(-1)!;
  t.regex(printed, /^data\/backups\/audit-\d{4}-\d{2}-\d{2}T\d{6}Z\.db$/);
  const snapshot = path.join(dir, printed);
  t.is(integrity(snapshot), 'ok');
  t.is(countRows(snapshot), 5000);
  t.is(sqliteJson<{ n: number }>(snapshot, 'SELECT count(*) AS n FROM api_keys')[0]!.n, 1, 'keys are in the same file');
  t.is(sqliteRaw(snapshot, 'PRAGMA journal_mode;').stdout.trim(), 'delete', 'the snapshot is one self-contained file');
  t.deepEqual(readdirSync(path.join(dir, 'data/backups')), [path.basename(printed)], 'no temporary file is left behind');

  const other = runCli(['backup', '--config', 'config/gateway.yaml'], { cwd: dir });
  t.is(other.status, 0, other.stderr);
  t.is(snapshotsIn(path.join(dir, 'data/backups')).length, 2, 'a second backup in the same second gets its own name');
});

test('a database whose chain was tampered with is not accepted as a snapshot', async (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  writeGatewayYaml(dir, upstream.url);
  seedKeys(dir, ['acme']);
  const dbPath = path.join(dir, 'data/audit.db');
  await insertRows(dbPath, 50);
  const edit = sqliteRaw(dbPath, "DROP TRIGGER usagelog_no_update; UPDATE usagelog SET allowed = 1 WHERE id = 'seed-14';");
  t.is(edit.status, 0, edit.stderr);

  const r = runCli(['backup'], { cwd: dir });
  t.is(r.status, 1);
  t.regex(r.stderr, /failed the audit chain check: usagelog row \d+ was changed/);
  t.deepEqual(snapshotsIn(path.join(dir, 'data/backups')), [], 'no snapshot of a broken trail is kept');
});

test('govgate backup fails with one line when the backup directory cannot be created', async (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  writeGatewayYaml(dir, upstream.url, { audit: { backup_dir: 'data/blocker/backups' } });
  seedKeys(dir, ['acme']);
  writeFileSync(path.join(dir, 'data/blocker'), 'a file where a directory should be');
  const r = runCli(['backup'], { cwd: dir });
  t.is(r.status, 1);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, /^govgate: .*(ENOTDIR|EEXIST|not a directory)/i);
});

test('rotation keeps the newest `keep` snapshots and touches no other file', async (t) => {
  const gw = await harness();
  const backups = path.join(gw.dir, 'data/backups');
  mkdirSync(backups, { recursive: true });
  const old = [new Date('2026-01-01T03:00:00Z'), new Date('2026-01-02T03:00:00Z'), new Date('2026-01-03T03:00:00Z'), new Date('2026-01-03T03:00:00.500Z')];
  writeFileSync(path.join(backups, snapshotName(old[0]!)), 'old');
  writeFileSync(path.join(backups, snapshotName(old[1]!)), 'old');
  writeFileSync(path.join(backups, snapshotName(old[2]!)), 'old');
  writeFileSync(path.join(backups, snapshotName(old[3]!, true)), 'old');
  const unrelated = ['notes.txt', 'audit-manual-copy.db', 'audit.db'];
  for (const f of unrelated) writeFileSync(path.join(backups, f), 'keep me');

  const result = await backupAuditDatabase(gw.dbPath, backups, 3);
  t.deepEqual(snapshotsIn(backups), [snapshotName(old[2]!), snapshotName(old[3]!, true), path.basename(result.file)].sort());
  t.deepEqual(result.deleted.map((f) => path.basename(f)).sort(), [snapshotName(old[0]!), snapshotName(old[1]!)].sort());
  for (const f of unrelated) t.true(existsSync(path.join(backups, f)), f);
});

test.serial('requests keep succeeding while a large database is backed up, and the snapshot is consistent', async (t) => {
  const gw = await harness();
  await insertRows(gw.dbPath, 100_000);
  const client = gw.sdk(gw.createKey('acme').key);
  const before = countRows(gw.dbPath);

  let done = false;
  const backup = backupAuditDatabase(gw.dbPath, path.join(gw.dir, 'data/backups'), 7).finally(() => {
    done = true;
  });
  let duringBackup = 0;
  const statuses: number[] = [];
  while (!done) {
    const { response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    statuses.push(response.status);
    if (!done) duringBackup++;
  }
  const result = await backup;
  t.true(duringBackup > 0, 'requests were answered while the snapshot was being written');
  t.true(statuses.every((s) => s === 200));
  t.is(integrity(result.file), 'ok');
  const inSnapshot = countRows(result.file);
  t.true(inSnapshot >= before && inSnapshot <= countRows(gw.dbPath), `snapshot holds ${inSnapshot} rows`);
  t.log(`backup of ${(result.bytes / 1e6).toFixed(0)} MB took ${result.ms} ms; ${duringBackup} requests answered meanwhile`);
});

test.serial('the scheduled backup fires on its node-cron schedule and keeps `backup_keep` snapshots', async (t) => {
  const gw = await harness({ audit: { backup_schedule: '* * * * * *', backup_dir: 'data/snaps', backup_keep: 2 } });
  const dir = path.join(gw.dir, 'data/snaps');
  const first = await until(() => snapshotsIn(dir).length >= 1, 5000);
  t.truthy(first, 'a snapshot appears within seconds');
  const written = await until(() => gw.logs.filter((l) => l.includes('"audit backup written"')).length >= 3, 8000);
  t.truthy(written, 'the schedule keeps firing');
  t.true(snapshotsIn(dir).length <= 2, `kept ${snapshotsIn(dir).length}`);
  t.is(integrity(path.join(dir, snapshotsIn(dir).at(-1)!)), 'ok');
  t.deepEqual(errorLogs(gw), []);
});

test.serial('a failed scheduled backup is logged and reported to Sentry, and requests still succeed', async (t) => {
  const ingest: SentryIngest = await startSentryIngest();
  cleanups.push(() => ingest.close());
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  writeGatewayYaml(dir, upstream.url, { audit: { backup_schedule: '* * * * * *', backup_dir: 'data/not-a-dir' } });
  const [acme] = seedKeys(dir, ['acme']);
  writeFileSync(path.join(dir, 'data/not-a-dir'), 'a file where the backup directory should be');
  const serve: ServeProcess = await startServe({ cwd: dir, env: { OPENAI_API_KEY: UPSTREAM_SECRET, SENTRY_DSN: ingest.dsn }, timeoutMs: 40_000 });
  cleanups.push(() => serve.stop());

  await ingest.waitFor((events) => events.some((e) => (e.tags as Record<string, string> | undefined)?.stage === 'backup'), 8000);

  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${serve.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme!.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
    });
    t.is(res.status, 200);
    await res.arrayBuffer();
  }
  const ready = await fetch(`${serve.url}/readyz`);
  t.is(ready.status, 200);
  t.is(await serve.stop(), 0);
  // Log lines are written in blocks; stopping flushes them.
  const failed = serve.stdout().split('\n').find((l) => l.includes('"audit backup failed"'));
  t.truthy(failed, 'the failure is logged');
  t.regex(failed!, /"backup_dir":"data\/not-a-dir"/);
  t.regex(failed!, /"level":50/);
});

test('backup settings are validated with the file and the key', (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const load = (audit: Record<string, unknown>) => {
    writeFileSync(path.join(dir, 'config/gateway.yaml'), `providers:\n  - name: openai\n    base_url: ${upstream.url}\naudit:\n${Object.entries(audit).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join('\n')}\n`);
    return () => loadGatewayConfig('config/gateway.yaml', {}, dir);
  };
  const defaults = load({ path: 'data/audit.db' })();
  t.is(defaults.audit.backupSchedule, '0 3 * * *');
  t.is(defaults.audit.backupDir, path.join(dir, 'data/backups'));
  t.is(defaults.audit.backupKeep, 7);
  t.throws(load({ backup_schedule: 'every night' }), { instanceOf: ConfigError, message: /^config\/gateway\.yaml:\d+:\d+: audit\.backup_schedule: "every night" is not a valid cron expression$/ });
  t.throws(load({ backup_keep: 0 }), { instanceOf: ConfigError, message: /audit\.backup_keep: must be an integer from 1/ });
  t.throws(load({ backup_dir: '' }), { instanceOf: ConfigError, message: /audit\.backup_dir: must be a non-empty string/ });
});

test('openDatabase is not needed to read a snapshot: it opens as a normal audit database', async (t) => {
  const gw = await harness();
  const result = await backupAuditDatabase(gw.dbPath, path.join(gw.dir, 'data/backups'), 7);
  const db = openDatabase(result.file, { synchronous: 'NORMAL' });
  t.teardown(() => db.close());
  t.is((db.prepare('SELECT count(*) AS n FROM usagelog').get() as { n: number }).n, 0);
});
