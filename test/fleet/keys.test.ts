import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';
import { GENESIS_HASH } from '../../gateway/store/chain.js';
import { createCentralKey } from '../../gateway/fleet/central-keys.js';
import { FLEET_CHAIN_ID } from '../../gateway/fleet/fleet-control-log.js';
import { FleetDatabase } from '../../gateway/fleet/fleet-database.js';
import { cliArgs, startServe, type CliResult, type ServeProcess } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { postgresInstalled, startPostgres, type PostgresCluster } from '../helpers/postgres.js';

const installed = postgresInstalled();
if (!installed) console.warn('fleet/keys: tests that need PostgreSQL skipped: it is not installed (apt-get install -y postgresql)');
const skipNote = installed ? '' : ' (SKIPPED: PostgreSQL is not installed; apt-get install -y postgresql)';
/** Tests that need a real PostgreSQL: skipped, and reported as such, where none is installed. */
/** Serial: the tests time keys reaching the same three gateways, and one stops PostgreSQL under them. */
const pgTest = installed ? test.serial : test.serial.skip;

/** The contract: every gateway of the fleet accepts a new key and refuses a revoked one within 1 s. */
const DEADLINE_MS = 1000;
/** Trust authentication ignores it, so it travels in the URL only to prove it is never printed. */
const PASSWORD = 'pw-never-printed-7f3a';

let cluster: PostgresCluster | undefined;
let upstream: MockUpstream | undefined;
let databaseUrl: string;
/** The test's own connection, to read what the CLI wrote. */
let central: FleetDatabase | undefined;
/** Successful key creations and revocations: each must have written exactly one event to the fleet's control log. */
let keyChanges = 0;
const dirs: string[] = [];
const gateways: ServeProcess[] = [];
/** Everything the CLI printed, searched for the password at the end. */
const cliOutput: string[] = [];

function env(): NodeJS.ProcessEnv {
  return { OPENAI_API_KEY: UPSTREAM_SECRET, DATABASE_URL: databaseUrl, PORT: '' };
}

/** `govgate …` run from the first gateway's directory, against its configuration. */
async function cli(...args: string[]): Promise<CliResult> {
  // Not spawnSync: the client's keep-alive timers must keep running while the CLI does.
  const child = spawn(process.execPath, cliArgs(args), { cwd: dirs[0]!, env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [status] = (await once(child, 'close')) as [number | null];
  cliOutput.push(stdout, stderr);
  return { status, stdout, stderr };
}

async function keysCli(...args: string[]): Promise<CliResult> {
  const r = await cli('keys', ...args);
  if (r.status === 0 && (args[0] === 'create' || args[0] === 'revoke')) keyChanges++;
  return r;
}

async function createKey(customer = 'acme', ...flags: string[]): Promise<{ id: string; key: string }> {
  const r = await keysCli('create', '--customer', customer, '--json', ...flags);
  if (r.status !== 0) throw new Error(`keys create exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { id: string; key: string };
}

/**
 * The test pauses for seconds at a time (the CLI runs synchronously); an idle
 * keep-alive connection the gateway closes meanwhile would fail the next
 * request, so the client gives its idle connections up first.
 */
const dispatcher = new Agent({ keepAliveTimeout: 500, keepAliveMaxTimeout: 500 });
const fetchWithoutStaleSockets = ((url: string, init?: object) => undiciFetch(url, { ...init, dispatcher })) as unknown as typeof fetch;

/** The status the gateway answers a chat completion with, through the official SDK. */
async function statusOf(gateway: ServeProcess, key: string): Promise<number> {
  const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0, timeout: 5000, fetch: fetchWithoutStaleSockets });
  try {
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    return 200;
  } catch (err) {
    if (err instanceof OpenAI.APIError && err.status !== undefined) return err.status;
    throw err;
  }
}

function statusesOf(key: string): Promise<number[]> {
  return Promise.all(gateways.map((g) => statusOf(g, key)));
}

/**
 * Polls until every gateway answers `status` for `key`; returns the
 * milliseconds from `since` (when the CLI returned) to the round that got
 * that answer everywhere, or the statuses seen once the deadline passed.
 */
async function allAnswer(key: string, status: number, since: number): Promise<{ ms: number } | { late: number[] }> {
  for (;;) {
    // Timed from when the round was sent: on a loaded machine the round trip, not the key's propagation, is what varies.
    const sent = Date.now();
    if (sent - since > DEADLINE_MS) return { late: await statusesOf(key) };
    const statuses = await statusesOf(key);
    if (statuses.every((s) => s === status)) return { ms: sent - since };
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function everythingPrinted(): string {
  return [...gateways.map((g) => g.stdout() + g.stderr()), ...cliOutput].join('\n');
}

interface FleetEvent {
  row_id: number;
  kind: string;
  actor: string;
  detail: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

/** The fleet's control log (`audit_event` rows under the reserved chain id), in chain order. */
async function fleetEvents(): Promise<FleetEvent[]> {
  const { rows } = await central!.query<Omit<FleetEvent, 'detail'> & { detail: string }>(
    'SELECT row_id::int AS row_id, kind, actor, detail, prev_hash, hash FROM audit_event WHERE gateway_id = $1 ORDER BY row_id',
    [FLEET_CHAIN_ID],
  );
  return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
}

function logLines(gateway: ServeProcess, msgStart: string): unknown[] {
  return gateway.stdout().split('\n').filter((line) => line.includes(`"msg":"${msgStart}`));
}

test.before(async () => {
  if (!installed) return;
  cluster = await startPostgres();
  databaseUrl = cluster.url.replace('postgres@', `postgres:${PASSWORD}@`);
  upstream = await startMockUpstream();
  // Its idle connections are cut when a test stops PostgreSQL; that is expected.
  central = new FleetDatabase(cluster.url, { applicationName: 'govgate test', onIdleError: () => {} });
  for (let i = 1; i <= 3; i++) {
    const dir = makeGatewayDir();
    dirs.push(dir);
    const file = writeGatewayYaml(dir, upstream.url);
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, fleet: { database_url_env: 'DATABASE_URL', gateway_id: `gw-${i}` } }, null, 2));
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  }
  // Each gateway has its own directory and audit file; PostgreSQL is all they share.
  gateways.push(...(await Promise.all(dirs.map((cwd) => startServe({ cwd, env: env() })))));
  // A first request loads the proxy's modules; the timed requests must measure key propagation, not that.
  const warm = await createKey('warm-up');
  const until = Date.now() + 10_000;
  while (!(await statusesOf(warm.key)).every((s) => s === 200)) {
    if (Date.now() > until) throw new Error('the gateways do not serve a fresh key');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

test.afterEach.always((t) => {
  if (!t.passed) for (const g of gateways) t.log(g.child.exitCode, g.stderr().slice(-2000), g.stdout().slice(-3000));
});

test.after.always(async () => {
  await Promise.all(gateways.map((g) => g.stop().catch(() => null)));
  await central?.close().catch(() => {});
  cluster?.close();
  await upstream?.close();
  await dispatcher.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

pgTest(`a key created through one gateway's CLI works on all three within 1 s${skipNote}`, async (t) => {
  const { key } = await createKey();
  const since = Date.now();
  const result = await allAnswer(key, 200, since);
  t.true('ms' in result, `not accepted everywhere within ${DEADLINE_MS} ms: ${JSON.stringify(result)}`);
  t.log(`accepted by all three after ${'ms' in result ? result.ms : '?'} ms`);
  // Written to PostgreSQL, not to the local file of the gateway whose directory the CLI ran in.
  const local = new Database(path.join(dirs[0]!, 'data/audit.db'), { readonly: true });
  try {
    t.is(local.prepare('SELECT count(*) FROM api_keys').pluck().get(), 0);
  } finally {
    local.close();
  }
});

pgTest(`a revoked key is refused by all three within 1 s, and its creation and revocation are chained in the fleet's control log${skipNote}`, async (t) => {
  const { id, key } = await createKey('acme', '--name', 'ci runner', '--actor', 'alice');
  t.true('ms' in (await allAnswer(key, 200, Date.now())));
  const r = await keysCli('revoke', id, '--actor', 'alice');
  const since = Date.now();
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`^Revoked key ${id}\\. Every gateway of the fleet refuses it within 1 second`));
  const result = await allAnswer(key, 401, since);
  t.true('ms' in result, `not refused everywhere within ${DEADLINE_MS} ms: ${JSON.stringify(result)}`);
  t.log(`refused by all three after ${'ms' in result ? result.ms : '?'} ms`);

  // Checked once the timing is: the two events of this key, one after the other at the head of the fleet's chain.
  const [created, revoked] = (await fleetEvents()).slice(-2);
  t.like(created, { kind: 'key.created', actor: 'alice', detail: { key_id: id, customer_id: 'acme', name: 'ci runner' } });
  t.like(revoked, { kind: 'key.revoked', actor: 'alice', detail: { key_id: id, customer_id: 'acme' } });
  t.deepEqual(Object.keys(created!.detail).sort(), ['customer_id', 'key_id', 'name']);
  t.deepEqual(Object.keys(revoked!.detail).sort(), ['customer_id', 'key_id']);
  t.is(revoked!.row_id, created!.row_id + 1);
  t.is(revoked!.prev_hash, created!.hash);
  t.regex(revoked!.hash, /^[0-9a-f]{64}$/);
  t.not(revoked!.hash, created!.hash);
});

pgTest(`keys list and revoke keep their single-node output in fleet mode${skipNote}`, async (t) => {
  const created = await createKey('globex');
  const text = await keysCli('list', '--customer', 'globex');
  t.is(text.status, 0, text.stderr);
  const [header, row] = text.stdout.trimEnd().split('\n');
  t.regex(header!, /^ID\s+CUSTOMER\s+NAME\s+PREFIX\s+CREATED\s+REVOKED$/);
  t.regex(row!, new RegExp(`^${created.id}\\s+globex\\s+${created.key.slice(0, 11)}…\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3}$`));
  const json = JSON.parse((await keysCli('list', '--customer', 'globex', '--json')).stdout) as Record<string, unknown>[];
  t.deepEqual(Object.keys(json[0]!), ['id', 'customer_id', 'name', 'prefix', 'created_at', 'revoked_at']);
  t.is((await keysCli('revoke', created.id)).status, 0);
  const again = await keysCli('revoke', created.id);
  t.is(again.status, 1);
  t.regex(again.stderr, new RegExp(`^govgate: key ${created.id} was already revoked at \\d{4}-`));
  const unknown = await keysCli('revoke', 'key_0000000000000000');
  t.is(unknown.status, 1);
  t.is(unknown.stderr, 'govgate: no key with id key_0000000000000000\n');
});

pgTest(`two keys create at once do not fork the fleet's control log, and audit verify --fleet walks it${skipNote}`, async (t) => {
  // Past row 9, whatever ran before: row ids must be compared as numbers, not as text ('9' > '10').
  while ((await fleetEvents()).length < 10) {
    await createCentralKey(central!, 'filler', null, 'test');
    keyChanges++;
  }
  // Holding SHARE on audit_event lets both CLIs run their transactions up to the event's INSERT (or a lock
  // before it), so the two really overlap instead of one finishing before the other has started.
  const blocker = central!.newClient();
  blocker.on('error', () => {});
  await blocker.connect();
  let racing: Promise<CliResult[]>;
  try {
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE audit_event IN SHARE MODE');
    let settled = false;
    racing = Promise.all([
      keysCli('create', '--customer', 'racer-1', '--actor', 'erin', '--json'),
      keysCli('create', '--customer', 'racer-2', '--actor', 'frank', '--json'),
    ]);
    void racing.finally(() => (settled = true));
    // Starting tsx is slow on a busy machine; once one CLI waits, the other gets 5 s (well inside the CLI's 10 s query timeout).
    const deadline = Date.now() + 60_000;
    let firstWaiting: number | undefined;
    for (;;) {
      const { rows } = await central!.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'govgate keys create' AND wait_event_type = 'Lock'",
      );
      const waiting = rows[0]!.n;
      if (waiting >= 2 || settled) break;
      if (waiting === 1) firstWaiting ??= Date.now();
      if (Date.now() > deadline || (firstWaiting !== undefined && Date.now() - firstWaiting > 5000)) {
        t.log(`only ${waiting} keys create waiting when the lock was released: the two may not have overlapped`);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await blocker.query('ROLLBACK').catch(() => {});
    await blocker.end().catch(() => {});
  }
  const results = await racing;
  for (const r of results) t.is(r.status, 0, r.stderr);
  const ids = results.map((r) => (JSON.parse(r.stdout) as { id: string }).id);

  const events = await fleetEvents();
  t.is(events.length, keyChanges, 'one event for each successful create and revoke of this file, none for a failed one');
  events.forEach((e, i) => {
    t.is(e.row_id, i + 1, 'row ids are 1, 2, 3, … with no gap or repeat');
    t.is(e.prev_hash, i === 0 ? GENESIS_HASH : events[i - 1]!.hash, `row ${e.row_id} links to the row before it`);
    t.regex(e.hash, /^[0-9a-f]{64}$/);
    t.true(['key.created', 'key.revoked'].includes(e.kind), e.kind);
    t.false(JSON.stringify(e).includes('gg_'), `row ${e.row_id} holds a key`);
  });
  const racers = events.slice(-2);
  t.deepEqual(racers.map((e) => e.kind), ['key.created', 'key.created']);
  t.deepEqual(racers.map((e) => [e.actor, e.detail.key_id, e.detail.customer_id]).sort(), [['erin', ids[0], 'racer-1'], ['frank', ids[1], 'racer-2']]);

  const verify = await cli('audit', 'verify', '--fleet');
  t.is(verify.status, 0, verify.stdout + verify.stderr);
  const head = events.at(-1)!;
  t.regex(verify.stdout, new RegExp(`^fleet control log intact: ${events.length} control events \\(key changes made in fleet mode\\); head row ${head.row_id} ${head.hash}$`, 'm'));
  t.regex(verify.stdout, /^fleet audit trail intact: \d+ gateways, /m);
  t.false(everythingPrinted().includes(PASSWORD), 'the password in the URL is never printed');
});

// Last: it stops the gateways, whose log lines are only written out on exit; no other test needs them after it.
pgTest(`with PostgreSQL down the fleet keeps serving its keys and keys create fails; once it is back a revocation lands within 1 s${skipNote}`, async (t) => {
  const { id, key } = await createKey();
  t.true('ms' in (await allAnswer(key, 200, Date.now())));

  cluster!.stop();
  try {
    t.deepEqual(await statusesOf(key), [200, 200, 200], 'served at once');
    // Long enough for several failed polls and LISTEN reconnects.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    t.deepEqual(await statusesOf(key), [200, 200, 200], 'still served once every gateway has noticed');

    const refused = await keysCli('create', '--customer', 'acme');
    t.is(refused.status, 1);
    t.regex(refused.stderr, /^govgate: keys create failed: the fleet database \(\$DATABASE_URL\): connection refused \(ECONNREFUSED\)\n$/);
    t.is(refused.stdout, '', 'no secret is printed for a key that was not stored');
    const notRevoked = await keysCli('revoke', id);
    t.is(notRevoked.status, 1);
    t.regex(notRevoked.stderr, /keys revoke failed: the fleet database/);
  } finally {
    cluster!.start();
  }

  const r = await keysCli('revoke', id);
  const since = Date.now();
  t.is(r.status, 0, r.stderr);
  const result = await allAnswer(key, 401, since);
  t.true('ms' in result, `not refused everywhere within ${DEADLINE_MS} ms of the revocation after the outage: ${JSON.stringify(result)}`);
  t.log(`refused by all three ${'ms' in result ? result.ms : '?'} ms after the revocation`);
  // A key made after the outage reaches every gateway too: the LISTEN connections are back or the poll covers for them.
  const fresh = await createKey();
  t.true('ms' in (await allAnswer(fresh.key, 200, Date.now())));

  // The request log is written in blocks; stopping the gateways flushes it.
  t.deepEqual(await Promise.all(gateways.map((g) => g.stop())), [0, 0, 0]);
  for (const g of gateways) {
    t.is(logLines(g, 'fleet database unreachable').length, 1, 'the loss is logged once');
    t.is(logLines(g, 'fleet database reachable again').length, 1, 'the recovery is logged once');
  }
  t.false(everythingPrinted().includes(PASSWORD), 'the password in the URL is never printed');
});
