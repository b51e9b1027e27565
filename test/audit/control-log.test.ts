import test from 'ava';
import { userInfo } from 'node:os';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { FIXTURE_POLICY, startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { runCli } from '../helpers/cli.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';
import { writeAuditRows } from '../helpers/audit-rows.js';

interface EventRow {
  kind: string;
  actor: string;
  detail: string;
}

interface ControlEvent {
  kind: string;
  actor: string;
  detail: Record<string, unknown>;
}

function events(h: Pick<Harness, 'dbPath'>): ControlEvent[] {
  return sqliteJson<EventRow>(h.dbPath, 'SELECT kind, actor, detail FROM audit_event ORDER BY rowid').map((e) => ({ ...e, detail: JSON.parse(e.detail) as Record<string, unknown> }));
}

async function until<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

let upstream: MockUpstream;
test.before(async () => {
  upstream = await startMockUpstream();
});
test.after.always(async () => {
  await upstream?.close();
});

test('the gateway records its start, the policy it loads, edits picked up and rejected, and its stop, chained', async (t) => {
  const h = await startHarness(upstream.url);
  try {
    const started = await until('the start events', () => (events(h).length >= 2 ? events(h) : undefined));
    t.deepEqual(started.map((e) => [e.kind, e.actor]), [['gateway.started', 'gateway'], ['policy.loaded', 'gateway']]);
    t.regex(String(started[0]!.detail.config_hash), /^[0-9a-f]{64}$/);
    const first = String(started[1]!.detail.policy_hash);
    t.deepEqual(sqliteJson<{ hash: string }>(h.dbPath, 'SELECT hash FROM policy_version').map((v) => v.hash), [first]);

    writeFileSync(h.policyFile, `${FIXTURE_POLICY}\n# edited\n`);
    const loaded = await until('the edit', () => events(h).find((e) => e.kind === 'policy.loaded' && e.detail.policy_hash !== first));
    t.is(sqliteJson<{ n: number }>(h.dbPath, `SELECT count(*) AS n FROM policy_version WHERE hash = '${String(loaded.detail.policy_hash)}'`)[0]!.n, 1, 'the new text is kept');

    writeFileSync(h.policyFile, FIXTURE_POLICY.replace(/^mode: enforce\b/m, 'mode: sideways'));
    const modeLine = FIXTURE_POLICY.split('\n').findIndex((line) => line.startsWith('mode: enforce')) + 1;
    const rejected = await until('the rejection', () => events(h).find((e) => e.kind === 'policy.rejected'));
    t.like(rejected.detail, { path: h.policyFile, line: modeLine, col: 7, key: 'mode' });
    t.regex(String(rejected.detail.error), /enforce/);
    await h.gateway.close();
    t.deepEqual(events(h).map((e) => e.kind), ['gateway.started', 'policy.loaded', 'policy.loaded', 'policy.rejected', 'gateway.stopped']);
    t.is(sqliteJson<{ n: number }>(h.dbPath, 'SELECT count(*) AS n FROM policy_version')[0]!.n, 2, 'both texts ever in force, nothing for the rejected one');
    const verify = runCli(['audit', 'verify'], { cwd: h.dir });
    t.is(verify.status, 0, verify.stdout + verify.stderr);
    t.regex(verify.stdout, /and 5 control events verified/);
  } finally {
    await h.close();
  }
});

test('CLI changes name their actor: --actor, then $GOVGATE_ACTOR, then the OS user', async (t) => {
  const h = await startHarness(upstream.url, { audit: { retention_days: 30 } });
  try {
    await writeAuditRows(h.dbPath, 50, 40, true);
    const { GOVGATE_ACTOR: _unset, ...env } = process.env;
    const cleanup = runCli(['cleanup-logs', '--actor', 'alice@example.com'], { cwd: h.dir, env: { GOVGATE_ACTOR: 'ignored-when-flag-given' } });
    t.is(cleanup.status, 0, cleanup.stderr);
    const backup = runCli(['backup'], { cwd: h.dir, env: { GOVGATE_ACTOR: 'ci-job-42' } });
    t.is(backup.status, 0, backup.stderr);
    const plain = { ...env, GOVGATE_ACTOR: '' };
    t.is(runCli(['backup'], { cwd: h.dir, env: plain }).status, 0);
    const bad = runCli(['backup', '--actor', 'two\nlines'], { cwd: h.dir });
    t.is(bad.status, 2);
    t.regex(bad.stderr, /--actor must be 1 to 128 printable ASCII characters/);

    const cli = events(h).filter((e) => e.actor !== 'gateway');
    t.deepEqual(cli.map((e) => [e.kind, e.actor]), [['retention.ran', 'alice@example.com'], ['backup.made', 'ci-job-42'], ['backup.made', userInfo().username]]);
    t.is(cli[0]!.detail.decisions, 50);
    t.is(cli[0]!.detail.outcomes, 50);
    const anchors = cli[0]!.detail.anchors as { chain: string; through_hash: string }[];
    t.deepEqual(anchors.map((a) => a.chain), ['usagelog', 'usagelog_outcome']);
    const stored = sqliteJson<{ through_hash: string }>(h.dbPath, "SELECT through_hash FROM audit_anchor WHERE chain = 'usagelog' ORDER BY id DESC LIMIT 1")[0]!;
    t.is(anchors[0]!.through_hash, stored.through_hash, 'the event names the anchor retention wrote');
    t.regex(String(cli[1]!.detail.file), /\.db$/);
    const verify = runCli(['audit', 'verify'], { cwd: h.dir });
    t.is(verify.status, 0, verify.stdout + verify.stderr);
  } finally {
    await h.close();
  }
});

test('the control log and the policy texts are append-only, and an edited event fails verification', async (t) => {
  const h = await startHarness(upstream.url);
  t.teardown(() => h.close());
  await until('the start events', () => (events(h).length >= 2 ? true : undefined));
  await h.gateway.close();
  const update = sqliteRaw(h.dbPath, "UPDATE audit_event SET actor = 'mallory'");
  t.not(update.status, 0);
  t.regex(update.stderr, /audit_event is append-only/);
  t.regex(sqliteRaw(h.dbPath, 'DELETE FROM audit_event').stderr, /audit_event is append-only/);
  t.regex(sqliteRaw(h.dbPath, "UPDATE policy_version SET text = 'version: 1'").stderr, /policy_version is append-only/);
  t.regex(sqliteRaw(h.dbPath, 'DELETE FROM policy_version').stderr, /policy_version is append-only/);

  const tampered = sqliteRaw(h.dbPath, "DROP TRIGGER audit_event_no_update; UPDATE audit_event SET actor = 'mallory' WHERE kind = 'policy.loaded';");
  t.is(tampered.status, 0, tampered.stderr);
  const verify = runCli(['audit', 'verify'], { cwd: h.dir });
  t.is(verify.status, 1);
  t.regex(verify.stdout, /audit trail BROKEN: audit_event row 2 \([0-9a-f-]+\) was changed: its content no longer matches its hash/);
});
