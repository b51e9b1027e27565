import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createCentralKey } from '../../gateway/fleet/central-keys.js';
import { pruneCentralAudit } from '../../gateway/fleet/central-retention.js';
import { migrateCentralSchema } from '../../gateway/fleet/central-schema.js';
import { FleetDatabase } from '../../gateway/fleet/fleet-database.js';
import { verifyCentralAudit } from '../../gateway/fleet/verify-central.js';
import { runCli, startServe, type CliResult, type ServeProcess } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, REPO_ROOT, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { postgresInstalled, startPostgres, type PostgresCluster } from '../helpers/postgres.js';

const installed = postgresInstalled();
if (!installed) console.warn('fleet/verify-central: skipped: PostgreSQL is not installed (apt-get install -y postgresql)');
const skipNote = installed ? '' : ' (SKIPPED: PostgreSQL is not installed; apt-get install -y postgresql)';
/** Serial: the tests edit the shared central tables, with their triggers off, and put them back. */
const pgTest = installed ? test.serial : test.serial.skip;

/** Trust authentication ignores it, so it travels in the URL only to prove it is never printed. */
const PASSWORD = 'pw-never-printed-93c1';
const GATEWAY_IDS = ['gw-1', 'gw-2'];
const ALLOWED_PER_GATEWAY = 6;
const BLOCKED_PER_GATEWAY = 2;
const CHAIN_TABLES = ['usagelog', 'usagelog_outcome', 'audit_event'] as const;

/** The recipe exactly as docs/fleet.md shows it. */
const RECIPE = /```python\n([\s\S]*?)```/.exec(readFileSync(path.join(REPO_ROOT, 'docs/fleet.md'), 'utf8'))![1]!;

let cluster: PostgresCluster | undefined;
let upstream: MockUpstream | undefined;
let central: FleetDatabase | undefined;
let databaseUrl = '';
const dirs: string[] = [];
const gateways: ServeProcess[] = [];
const printed: string[] = [];
/** Rows per chain table in each gateway's local file once it stopped: what the central tables must hold. */
const local = new Map<string, Record<(typeof CHAIN_TABLES)[number], number>>();

function env(): NodeJS.ProcessEnv {
  return { OPENAI_API_KEY: UPSTREAM_SECRET, DATABASE_URL: databaseUrl, PORT: '' };
}

function cli(...args: string[]): CliResult {
  const r = runCli(args, { cwd: dirs[0]!, env: env(), timeoutMs: 60_000 });
  printed.push(r.stdout, r.stderr);
  return r;
}

function recipe(): CliResult {
  const r = spawnSync('python3', ['-c', RECIPE], { env: { ...process.env, DATABASE_URL: databaseUrl }, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A statement as the database's superuser, the way an operator with psql would tamper. */
async function sql(text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return (await central!.query<Record<string, unknown>>(text, values)).rows;
}

/** Edits central rows past the append-only triggers, then puts the triggers back whatever happened. */
async function tamper(table: string, edit: string, values: unknown[] = []): Promise<void> {
  await sql(`ALTER TABLE ${table} DISABLE TRIGGER ALL`);
  try {
    await sql(edit, values);
  } finally {
    await sql(`ALTER TABLE ${table} ENABLE TRIGGER ALL`);
  }
}

async function chat(url: string, key: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res.status;
}

async function centralCounts(gatewayId: string): Promise<Record<(typeof CHAIN_TABLES)[number], number>> {
  const counts = { usagelog: 0, usagelog_outcome: 0, audit_event: 0 };
  for (const table of CHAIN_TABLES) {
    const rows = await sql(`SELECT count(*)::int AS n FROM ${table} WHERE gateway_id = $1`, [gatewayId]);
    counts[table] = rows[0]!.n as number;
  }
  return counts;
}

function localCounts(dir: string): Record<(typeof CHAIN_TABLES)[number], number> {
  const count = (table: string) => Number(execFileSync('sqlite3', [path.join(dir, 'data/audit.db'), `SELECT count(*) FROM ${table}`], { encoding: 'utf8' }).trim());
  return { usagelog: count('usagelog'), usagelog_outcome: count('usagelog_outcome'), audit_event: count('audit_event') };
}

const total = (table: (typeof CHAIN_TABLES)[number]) => [...local.values()].reduce((sum, c) => sum + c[table], 0);

/**
 * Rows come from real gateways through the real shipper: two gateways in
 * fleet mode serve allowed and refused requests, ship, and stop (which ships
 * the last rows); then every local row must be in the central tables.
 */
test.before(async () => {
  if (!installed) return;
  [cluster, upstream] = await Promise.all([startPostgres(), startMockUpstream()]);
  databaseUrl = cluster.url.replace('postgres@', `postgres:${PASSWORD}@`);
  central = new FleetDatabase(databaseUrl, { applicationName: 'govgate test', onIdleError: () => {} });
  await migrateCentralSchema(central);
  const { key } = await createCentralKey(central, 'acme', null, 'test');
  for (const gatewayId of GATEWAY_IDS) {
    const dir = makeGatewayDir();
    dirs.push(dir);
    const file = writeGatewayYaml(dir, upstream.url);
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, fleet: { database_url_env: 'DATABASE_URL', gateway_id: gatewayId } }, null, 2));
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  }
  gateways.push(...(await Promise.all(dirs.map((cwd) => startServe({ cwd, env: env() })))));
  for (const gateway of gateways) {
    for (let i = 0; i < ALLOWED_PER_GATEWAY; i++) await chat(gateway.url, key);
    for (let i = 0; i < BLOCKED_PER_GATEWAY; i++) await chat(gateway.url, key, { 'x-governance-metadata': '{"data_classification":"restricted"}' });
  }
  await Promise.all(gateways.map((g) => g.stop()));
  GATEWAY_IDS.forEach((id, i) => local.set(id, localCounts(dirs[i]!)));
});

test.afterEach.always((t) => {
  if (!t.passed) for (const g of gateways) t.log(g.child.exitCode, g.stderr().slice(-2000), g.stdout().split('\n').filter((l) => /"level":(40|50)/.test(l)).slice(-10).join('\n'));
});

test.after.always(async () => {
  await Promise.all(gateways.map((g) => g.stop().catch(() => null)));
  await central?.close();
  cluster?.close();
  await upstream?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

pgTest(`the shipper put every local row in the central tables${skipNote}`, async (t) => {
  for (const id of GATEWAY_IDS) {
    t.is(local.get(id)!.usagelog, ALLOWED_PER_GATEWAY + BLOCKED_PER_GATEWAY, `${id} decisions`);
    t.deepEqual(await centralCounts(id), local.get(id), `${id}: central rows = local rows`);
  }
});

pgTest(`audit verify --fleet verifies every gateway's chains${skipNote}`, (t) => {
  const r = cli('audit', 'verify', '--fleet');
  t.is(r.status, 0, r.stderr + r.stdout);
  for (const id of GATEWAY_IDS) {
    const counts = local.get(id)!;
    t.regex(r.stdout, new RegExp(`^gateway ${id} intact: ${counts.usagelog} decision rows, ${counts.usagelog_outcome} outcome rows, ${counts.audit_event} control events; usagelog head row \\d+ [0-9a-f]{64}`, 'm'));
  }
  t.regex(r.stdout, /^fleet control log intact: 1 control events \(key changes made in fleet mode\); head row 1 [0-9a-f]{64}$/m, 'the key.created of the key the tests use');
  t.true(r.stdout.endsWith(
    `fleet audit trail intact: ${GATEWAY_IDS.length} gateways, ${total('usagelog')} decision rows, ${total('usagelog_outcome')} outcome rows and ${total('audit_event') + 1} control events verified\n`,
  ), r.stdout);
});

pgTest(`the walk gives the same answer in batches of 2 rows as in batches of 5,000${skipNote}`, async (t) => {
  const small = await verifyCentralAudit(central!, { batchRows: 2, retentionDays: 90 });
  const large = await verifyCentralAudit(central!, { retentionDays: 90 });
  t.true(small.ok);
  t.deepEqual(small.gateways, large.gateways);
  t.deepEqual(small.gateways.map((g) => g.gatewayId), ['@fleet', ...GATEWAY_IDS]);
});

pgTest(`the Python recipe in docs/fleet.md verifies the central tables${skipNote}`, (t) => {
  const r = recipe();
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), `${total('usagelog') + total('usagelog_outcome') + total('audit_event') + 1} central rows verified`, 'and the key.created in the fleet chain');
});

pgTest(`usage in fleet mode shows every gateway, and --gateway picks one${skipNote}`, (t) => {
  const all = cli('usage');
  t.is(all.status, 0, all.stderr);
  const lines = all.stdout.trimEnd().split('\n');
  t.regex(lines[0]!, /^GATEWAY\s+CUSTOMER\s+MODEL\s+REQUESTS\s+BLOCKED\s+PROMPT_TOKENS\s+COMPLETION_TOKENS\s+TOTAL_TOKENS$/);
  for (const id of GATEWAY_IDS) {
    t.regex(all.stdout, new RegExp(`^${id}\\s+acme\\s+gpt-4o-mini\\s+${ALLOWED_PER_GATEWAY + BLOCKED_PER_GATEWAY}\\s+${BLOCKED_PER_GATEWAY}\\s`, 'm'));
  }

  const one = cli('usage', '--gateway', 'gw-2', '--json');
  t.is(one.status, 0, one.stderr);
  const rows = JSON.parse(one.stdout) as { gateway: string; customer: string; requests: number; blocked: number; total_tokens: number }[];
  t.deepEqual(rows.map((r) => [r.gateway, r.customer, r.requests, r.blocked]), [['gw-2', 'acme', ALLOWED_PER_GATEWAY + BLOCKED_PER_GATEWAY, BLOCKED_PER_GATEWAY]]);
  t.true(rows[0]!.total_tokens > 0, 'tokens come from the shipped outcomes');
});

pgTest(`an edited central row is named with its gateway, by verify --fleet and by the recipe${skipNote}`, async (t) => {
  const [row] = await sql("SELECT row_id::int AS row_id, id FROM usagelog WHERE gateway_id = 'gw-2' ORDER BY row_id OFFSET 2 LIMIT 1");
  const { row_id: rowId, id } = row as { row_id: number; id: string };
  await tamper('usagelog', "UPDATE usagelog SET allowed = NOT allowed WHERE gateway_id = 'gw-2' AND row_id = $1", [rowId]);
  try {
    const r = cli('audit', 'verify', '--fleet');
    t.is(r.status, 1, r.stderr);
    t.regex(r.stdout, /^gateway gw-1 intact: /m, 'the gateway before it was verified');
    t.true(r.stdout.endsWith(`audit trail BROKEN: gateway gw-2 usagelog row ${rowId} (${id}) was changed: its content no longer matches its hash\n`), r.stdout);
    const p = recipe();
    t.is(p.status, 1);
    t.is(p.stderr.trim(), `audit trail BROKEN: gateway gw-2 usagelog row ${rowId} was changed`);
  } finally {
    await tamper('usagelog', "UPDATE usagelog SET allowed = NOT allowed WHERE gateway_id = 'gw-2' AND row_id = $1", [rowId]);
  }
  t.is(cli('audit', 'verify', '--fleet').status, 0, 'intact again once the edit is undone');
});

pgTest(`a row deleted from the middle of a central chain is found${skipNote}`, async (t) => {
  const rows = (await sql("SELECT row_id::int AS row_id, log_id FROM usagelog_outcome WHERE gateway_id = 'gw-1' ORDER BY row_id LIMIT 3")) as { row_id: number; log_id: string }[];
  const [before, gone, after] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
  await sql('CREATE TABLE deleted_outcome AS SELECT * FROM usagelog_outcome WHERE gateway_id = $1 AND row_id = $2', ['gw-1', gone.row_id]);
  await tamper('usagelog_outcome', "DELETE FROM usagelog_outcome WHERE gateway_id = 'gw-1' AND row_id = $1", [gone.row_id]);
  try {
    const r = cli('audit', 'verify', '--fleet');
    t.is(r.status, 1, r.stderr);
    t.true(r.stdout.endsWith(
      `audit trail BROKEN: gateway gw-1 usagelog_outcome row ${after.row_id} (${after.log_id}) does not link to row ${before.row_id}: rows between them were removed, or row ${before.row_id} was changed and re-hashed\n`,
    ), r.stdout);
    const p = recipe();
    t.is(p.status, 1);
    t.is(p.stderr.trim(), `audit trail BROKEN: gateway gw-1 usagelog_outcome row ${after.row_id} does not link to the row before it`);
  } finally {
    await sql('INSERT INTO usagelog_outcome SELECT * FROM deleted_outcome');
    await sql('DROP TABLE deleted_outcome');
  }
  t.is(cli('audit', 'verify', '--fleet').status, 0);
});

pgTest(`an anchor forged to cover rows inside the retention window is refused${skipNote}`, async (t) => {
  const [row] = await sql("SELECT row_id::int AS row_id, hash FROM usagelog WHERE gateway_id = 'gw-1' ORDER BY row_id OFFSET 1 LIMIT 1");
  const { row_id: rowId, hash } = row as { row_id: number; hash: string };
  await sql("INSERT INTO audit_anchor (gateway_id, id, chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at) VALUES ('gw-1', 1000, 'usagelog', $1, $2, now(), 2, now())", [rowId, hash]);
  try {
    const r = cli('audit', 'verify', '--fleet');
    t.is(r.status, 1, r.stderr);
    t.regex(r.stdout, new RegExp(`audit trail BROKEN: gateway gw-1 usagelog row ${rowId} is covered by retention anchor 1000, which deleted rows up to .*, inside the retention window`));
  } finally {
    await tamper('audit_anchor', "DELETE FROM audit_anchor WHERE gateway_id = 'gw-1' AND id = 1000");
  }
});

pgTest(`verify --fleet and --gateway need fleet mode; the URL is never printed${skipNote}`, (t) => {
  const single = makeGatewayDir();
  try {
    writeGatewayYaml(single, upstream!.url);
    const verify = runCli(['audit', 'verify', '--fleet'], { cwd: single, env: env() });
    t.is(verify.status, 2);
    t.regex(verify.stderr, /audit verify --fleet needs fleet mode: .* has no fleet.database_url_env/);
    const usage = runCli(['usage', '--gateway', 'gw-1'], { cwd: single, env: env() });
    t.is(usage.status, 2);
    t.regex(usage.stderr, /--gateway needs fleet mode/);
    printed.push(verify.stdout, verify.stderr, usage.stdout, usage.stderr);
  } finally {
    rmSync(single, { recursive: true, force: true });
  }
  t.false(printed.join('\n').includes(PASSWORD));
});

pgTest(`after central retention a chain begins at its anchor and still verifies; rows cut off after an anchor are found${skipNote}`, async (t) => {
  const [third] = await sql("SELECT row_id::int AS row_id, hash FROM usagelog WHERE gateway_id = 'gw-1' ORDER BY row_id OFFSET 2 LIMIT 1");
  const { row_id: through, hash } = third as { row_id: number; hash: string };
  // What a gateway's own retention ships when it deletes its oldest rows (aged here: the rows are minutes old).
  const anchor = "INSERT INTO audit_anchor (gateway_id, id, chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at) VALUES ('gw-1', $1, 'usagelog', $2, $3, now() - interval '100 days', 3, now())";
  // Retention deletes for good, and the other tests count every row: what it deletes is kept aside and put back.
  await sql("CREATE TABLE pruned_usagelog AS SELECT * FROM usagelog WHERE gateway_id = 'gw-1' AND row_id <= $1", [through]);
  try {
    // Ids 9 and 10 (below): anchors must be taken in number order, not as text ('10' < '9').
    await sql(anchor, [9, through, hash]);
    const covering = await verifyCentralAudit(central!, { retentionDays: 90 });
    t.true(covering.ok, 'an anchor may cover rows still central, when it names them with their hashes');

    t.like(await pruneCentralAudit(central!), { ran: true, decisions: 3, outcomes: 0 });
    const pruned = await verifyCentralAudit(central!, { retentionDays: 90 });
    t.true(pruned.ok, JSON.stringify(pruned));
    t.is(pruned.gateways.find((g) => g.gatewayId === 'gw-1')!.rows.usagelog, local.get('gw-1')!.usagelog - 3);
    t.is(recipe().stdout.trim(), `${total('usagelog') + total('usagelog_outcome') + total('audit_event') + 1 - 3} central rows verified`);

    const [last] = await sql("SELECT max(row_id)::int AS row_id FROM usagelog WHERE gateway_id = 'gw-1'");
    const lastRow = (last as { row_id: number }).row_id;
    await sql(anchor.replace("interval '100 days'", "interval '99 days'"), [10, lastRow + 5, 'f'.repeat(64)]);
    const cut = await verifyCentralAudit(central!, { retentionDays: 90 });
    t.false(cut.ok);
    if (!cut.ok) t.like(cut.broken, { gatewayId: 'gw-1', chain: 'usagelog', rowid: lastRow, problem: `is the last row, but retention anchor 10 covers rows through ${lastRow + 5}: rows were cut off the end of the chain` });
  } finally {
    await tamper('audit_anchor', "DELETE FROM audit_anchor WHERE gateway_id = 'gw-1' AND id IN (9, 10)");
    await sql('INSERT INTO usagelog SELECT * FROM pruned_usagelog');
    await sql('DROP TABLE pruned_usagelog');
  }
  t.deepEqual(await centralCounts('gw-1'), local.get('gw-1'), 'every row is back once the anchors are gone');
  t.true((await verifyCentralAudit(central!, { retentionDays: 90 })).ok, 'and the chains verify as before');
});
