import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { Agent, fetch as undiciFetch } from 'undici';
import { rowHash } from '../../gateway/store/chain.js';
import { createCentralKey } from '../../gateway/fleet/central-keys.js';
import { migrateCentralSchema } from '../../gateway/fleet/central-schema.js';
import { FleetDatabase } from '../../gateway/fleet/fleet-database.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { makeGatewayDir, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { postgresInstalled, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { redisInstalled, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { countOf } from '../limits/support.js';
import { policy } from '../helpers/policy-builder.js';

const missing = [postgresInstalled() ? null : 'PostgreSQL (apt-get install -y postgresql)', redisInstalled() ? null : 'redis-server (apt-get install -y redis-server)'].filter((m) => m !== null);
if (missing.length > 0) console.warn(`fleet/shipping: skipped: ${missing.join(' and ')} not installed`);
const skipNote = missing.length === 0 ? '' : ` (SKIPPED: ${missing.join(' and ')} not installed)`;
/** Serial: the tests share three gateways and a PostgreSQL that one of them takes down. */
const fleetTest = missing.length === 0 ? test.serial : test.serial.skip;

const LIMIT = 30;
const POLICY = policy().catchAll().customer('limited', { requests_per_minute: LIMIT }).yaml();
const CLIENTS_PER_GATEWAY = 20;
const LOAD_MS = 8000;
const OUTAGE_MS = 10_000;
/** After the outage the backlog must be shipped within this; the contract says "within seconds". */
const CATCH_UP_MS = 30_000;

let cluster: PostgresCluster | undefined;
let redis: RedisServer | undefined;
let upstream: MockUpstream | undefined;
let central: FleetDatabase | undefined;
const dirs: string[] = [];
const gateways: ServeProcess[] = [];
const dispatcher = new Agent({ keepAliveTimeout: 1000, keepAliveMaxTimeout: 1000, connections: 64 });

function env(): NodeJS.ProcessEnv {
  return { OPENAI_API_KEY: UPSTREAM_SECRET, DATABASE_URL: cluster!.url, PORT: '' };
}

function gatewayDir(gatewayId: string): string {
  const dir = makeGatewayDir();
  dirs.push(dir);
  const file = writeGatewayYaml(dir, upstream!.url, { limits: { store: 'redis', redis_url: redis!.url } });
  const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...config, fleet: { database_url_env: 'DATABASE_URL', gateway_id: gatewayId } }, null, 2));
  writeFileSync(path.join(dir, 'config/policy.yaml'), POLICY);
  return dir;
}

const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

async function chat(url: string, key: string): Promise<{ status: number; logId: string | null }> {
  const res = await undiciFetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: CHAT_BODY,
    dispatcher,
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return { status: res.status, logId: res.headers.get('x-governance-log-id') };
}

async function metric(url: string, name: string): Promise<Map<string, number>> {
  // A fresh connection: a kept-alive one may have been closed by the gateway while the test slept.
  const res = await undiciFetch(`${url}/metrics`, { headers: { connection: 'close' }, signal: AbortSignal.timeout(5000) });
  const values = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      const at = line.lastIndexOf(' ');
      values.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
  }
  return values;
}

async function caughtUp(url: string): Promise<boolean> {
  try {
    const lag = await metric(url, 'govgate_fleet_ship_lag_rows');
    return lag.size === 5 && [...lag.values()].every((v) => v === 0);
  } catch {
    return false;
  }
}

async function until(what: string, done: () => Promise<boolean>, ms: number): Promise<number> {
  const started = Date.now();
  while (!(await done())) {
    if (Date.now() - started > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return Date.now() - started;
}

function localCount(dir: string, sql: string): number {
  return Number(execFileSync('sqlite3', [path.join(dir, 'data/audit.db'), sql], { encoding: 'utf8' }).trim());
}

async function centralCount(sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await central!.query<{ n: string }>(sql, values);
  return Number(rows[0]!.n);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test.before(async () => {
  if (missing.length > 0) return;
  [cluster, redis, upstream] = await Promise.all([startPostgres(), startRedis(), startMockUpstream()]);
  central = new FleetDatabase(cluster.url, { applicationName: 'govgate test', onIdleError: () => {} });
  await migrateCentralSchema(central);
  const ids = ['gw-1', 'gw-2', 'gw-3'];
  gateways.push(...(await Promise.all(ids.map((id) => startServe({ cwd: gatewayDir(id), env: env() })))));
});

test.afterEach.always((t) => {
  if (!t.passed) for (const g of gateways) t.log(g.child.exitCode, g.stderr().slice(-1500), g.stdout().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-10).join('\n'));
});

test.after.always(async () => {
  await Promise.all(gateways.map((g) => g.stop().catch(() => null)));
  await central?.close();
  cluster?.close();
  await redis?.stop();
  await upstream?.close();
  await dispatcher.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

fleetTest(`requests_per_minute N lets exactly N through across the three gateways${skipNote}`, async (t) => {
  const { key } = await createCentralKey(central!, 'limited', 'limited', 'test');
  // Not probed: every probe would count against the limit. Keys reach every gateway within a second.
  await sleep(1500);
  // The window is the calendar minute: the burst must not straddle two.
  if (new Date().getUTCSeconds() >= 55) await sleep((60 - new Date().getUTCSeconds()) * 1000 + 200);
  const results = await Promise.all(Array.from({ length: 3 * CLIENTS_PER_GATEWAY }, (_, i) => chat(gateways[i % 3]!.url, key)));
  const statuses = results.map((r) => r.status);
  t.is(countOf(statuses, 200), LIMIT, 'exactly the limit, across the fleet');
  t.is(countOf(statuses, 429), 3 * CLIENTS_PER_GATEWAY - LIMIT);
});

fleetTest(`a fourth gateway with a gateway id already in use refuses to ship, says so, and keeps serving${skipNote}`, async (t) => {
  const dir = gatewayDir('gw-1');
  const duplicate = await startServe({ cwd: dir, env: env() });
  // Not among `gateways`: the other tests expect the three of the fleet there and nothing else.
  t.teardown(() => duplicate.stop());
  const { key } = await createCentralKey(central!, 'acme', 'dup', 'test');
  await until('the key', async () => (await chat(duplicate.url, key)).status === 200, 5000);
  const ids = await Promise.all(Array.from({ length: 5 }, () => chat(duplicate.url, key)));
  t.true(ids.every((r) => r.status === 200), 'it serves');
  await until('the conflict metric', async () => (await metric(duplicate.url, 'govgate_fleet_identity_conflict')).get('govgate_fleet_identity_conflict') === 1, 10_000);
  await sleep(1000);
  t.is(await centralCount('SELECT count(*) AS n FROM usagelog WHERE id = ANY($1)', [ids.map((r) => r.logId)]), 0, 'none of its rows are central');
  t.true((await metric(duplicate.url, 'govgate_fleet_ship_lag_rows')).get('govgate_fleet_ship_lag_rows{table="usagelog"}')! >= 5);
  // The owner is unaffected.
  t.true(await caughtUp(gateways[0]!.url));
  // The log is written in blocks; stopping flushes it.
  t.is(await duplicate.stop(), 0);
  t.regex(duplicate.stdout(), /audit shipping refused, serving and recording locally: gateway id \\"gw-1\\" belongs to another audit file/);
});

// Last: it ends by stopping the gateways, which no other test needs after it.
fleetTest(`under load, a gateway killed and restarted and PostgreSQL down for 10 s, every forwarded request's row reaches PostgreSQL once; a stop ships the last rows, and the loss and the recovery were each logged once${skipNote}`, async (t) => {
  const { key } = await createCentralKey(central!, 'acme', 'load', 'test');
  // The key reaches every gateway within a second (fleet/keys.test.ts).
  await until('the key on all three', async () => (await Promise.all(gateways.map((g) => chat(g.url, key).catch(() => ({ status: 0 }))))).every((r) => r.status === 200), 5000);
  upstream!.reset();

  const logIds: string[] = [];
  const statuses: number[] = [];
  let errors = 0;
  const loadUntil = Date.now() + LOAD_MS;
  const client = async (g: number) => {
    while (Date.now() < loadUntil) {
      try {
        const r = await chat(gateways[g]!.url, key);
        statuses.push(r.status);
        if (r.status === 200 && r.logId) logIds.push(r.logId);
      } catch {
        // The killed gateway, until it is back.
        errors++;
        await sleep(100);
      }
    }
  };
  const load = Promise.all(gateways.flatMap((_, g) => Array.from({ length: CLIENTS_PER_GATEWAY }, () => client(g))));

  await sleep(1500);
  const killed = gateways[1]!;
  killed.child.kill('SIGKILL');
  await new Promise((resolve) => killed.child.once('exit', resolve));
  gateways[1] = await startServe({ cwd: dirs[1]!, env: env() });
  t.log(`gw-2 killed and back after ${LOAD_MS - (loadUntil - Date.now())} ms of load`);

  cluster!.stop();
  try {
    const outageStarted = Date.now();
    await load;
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - outageStarted)));
    // Each gateway has rows of the outage to ship, whenever the restart of gw-2 ended.
    t.deepEqual((await Promise.all(gateways.map((g) => chat(g.url, key)))).map((r) => r.status), [200, 200, 200], 'serving while PostgreSQL is down');
    await sleep(1000);
    for (const g of gateways) {
      const lag = await metric(g.url, 'govgate_fleet_ship_lag_rows');
      t.true((lag.get('govgate_fleet_ship_lag_rows{table="usagelog"}') ?? 0) > 0, 'rows wait locally while PostgreSQL is down');
    }
  } finally {
    cluster!.start();
  }

  const caughtUpMs = await Promise.all(gateways.map((g, i) => until(`gw-${i + 1} to catch up`, () => caughtUp(g.url), CATCH_UP_MS)));
  t.log(`load: ${statuses.length} answers (${countOf(statuses, 200)} x 200), ${errors} connection errors; upstream received ${upstream!.received.length}; caught up ${caughtUpMs.join(', ')} ms after PostgreSQL was back`);

  // Every request a client saw forwarded has its row centrally, once.
  const { rows: found } = await central!.query<{ id: string }>('SELECT id FROM usagelog WHERE id = ANY($1)', [logIds]);
  t.is(found.length, logIds.length, 'every forwarded request is in PostgreSQL');
  t.is(await centralCount('SELECT count(*) AS n FROM (SELECT id FROM usagelog GROUP BY id HAVING count(*) > 1) d'), 0, 'no row stored twice');
  // The upstream saw no request without a central row (a request in flight when gw-2 was killed may have a row and no forward).
  const forwarded = await centralCount("SELECT count(*) AS n FROM usagelog WHERE allowed AND customer_id = 'acme' AND created_at > now() - interval '10 minutes'");
  t.true(forwarded >= upstream!.received.length && forwarded <= upstream!.received.length + CLIENTS_PER_GATEWAY, `${forwarded} central rows for ${upstream!.received.length} forwarded`);

  for (const [i, dir] of dirs.slice(0, 3).entries()) {
    const id = `gw-${i + 1}`;
    for (const table of ['usagelog', 'usagelog_outcome', 'audit_event', 'audit_anchor']) {
      t.is(await centralCount(`SELECT count(*) AS n FROM ${table} WHERE gateway_id = $1`, [id]), localCount(dir, `SELECT count(*) FROM ${table}`), `${id} ${table}`);
    }
  }
  t.is(await centralCount('SELECT count(*) AS n FROM policy_version'), 1);
  // The killed gateway's chain continues across its restart, centrally too.
  const { rows: chain } = await central!.query<Record<string, unknown>>(
    `SELECT row_id, id, customer_id, api_key_id, model, operation, meta, risk_score, allowed::int AS allowed, reason,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') AS created_at, policy_hash, causes, prev_hash, hash
     FROM usagelog WHERE gateway_id = 'gw-2' ORDER BY row_id`,
  );
  t.true(chain.every((r, i) => rowHash('usagelog', r.prev_hash as string, r) === r.hash && (i === 0 || r.prev_hash === chain[i - 1]!.hash)), 'gw-2\'s central chain verifies');
  // The seed's queries, as written.
  await t.notThrowsAsync(central!.query("SELECT count(*) FROM usagelog WHERE allowed = false AND created_at > now() - interval '1 hour'"));
  const { rows: perCustomer } = await central!.query<{ customer_id: string; n: string }>("SELECT customer_id, count(*) AS n FROM usagelog WHERE created_at > now() - interval '1 hour' GROUP BY customer_id");
  t.true(perCustomer.some((r) => r.customer_id === 'acme' && Number(r.n) === forwarded));
  t.is(await metric(gateways[0]!.url, 'govgate_fleet_identity_conflict').then((m) => m.get('govgate_fleet_identity_conflict')), 0);

  // The log is written in blocks, which a stop flushes.
  t.deepEqual(await Promise.all(gateways.map((g) => g.stop())), [0, 0, 0]);
  for (const [i, dir] of dirs.slice(0, 3).entries()) {
    const id = `gw-${i + 1}`;
    t.is(await centralCount("SELECT count(*) AS n FROM audit_event WHERE gateway_id = $1 AND kind = 'gateway.stopped'", [id]), localCount(dir, "SELECT count(*) FROM audit_event WHERE kind = 'gateway.stopped'"), id);
    const lines = gateways[i]!.stdout().split('\n');
    t.is(lines.filter((l) => l.includes('"msg":"audit shipping paused')).length, 1, `${id}: the loss is logged once`);
    t.is(lines.filter((l) => l.includes('"msg":"audit shipping resumed')).length, 1, `${id}: the recovery is logged once`);
  }
});
