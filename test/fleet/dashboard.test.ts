import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { chromium } from 'playwright-core';
import { CentralDashboard } from '../../gateway/fleet/central-dashboard.js';
import { createCentralKey } from '../../gateway/fleet/central-keys.js';
import { migrateCentralSchema } from '../../gateway/fleet/central-schema.js';
import { FleetDatabase } from '../../gateway/fleet/fleet-database.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { postgresInstalled, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { ADMIN_TOKEN } from '../admin/support.js';

const installed = postgresInstalled();
if (!installed) console.warn('fleet/dashboard: skipped: PostgreSQL is not installed (apt-get install -y postgresql)');
const skipNote = installed ? '' : ' (SKIPPED: PostgreSQL is not installed; apt-get install -y postgresql)';
/** Serial: one test stops the PostgreSQL the others read through the dashboards. */
const pgTest = installed ? test.serial : test.serial.skip;

/** Different traffic per gateway, so a filter that does not narrow, or narrows to the wrong one, shows. */
const TRAFFIC = [
  { id: 'gw-a', acme: 3, globex: 1, blocked: 1 },
  { id: 'gw-b', acme: 1, globex: 0, blocked: 2 },
] as const;
const SHIP_WAIT_MS = 15_000;

let cluster: PostgresCluster | undefined;
let upstream: MockUpstream | undefined;
let central: FleetDatabase | undefined;
const dirs: string[] = [];
const gateways: ServeProcess[] = [];

function env(): NodeJS.ProcessEnv {
  return { OPENAI_API_KEY: UPSTREAM_SECRET, DATABASE_URL: cluster!.url, GOVGATE_ADMIN_TOKEN: ADMIN_TOKEN, PORT: '' };
}

async function sql<R>(text: string, values: unknown[] = []): Promise<R[]> {
  return (await central!.query<R & Record<string, unknown>>(text, values)).rows;
}

async function chat(url: string, key: string, blocked: boolean): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(blocked ? { 'x-governance-metadata': '{"data_classification":"restricted"}' } : {}),
    },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'secret prompt text' }] }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res.status;
}

async function admin<T>(gateway: ServeProcess, apiPath: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${gateway.url}${apiPath}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(20_000) });
  return { status: res.status, body: (await res.json()) as T };
}

interface Summary {
  hourly: { allowed: number; blocked: number }[];
  daily: { allowed: number; blocked: number }[];
  risk: { count: number }[];
  blocking: { cause: string; count: number }[];
  customers: { customer: string; model: string | null; requests: number; blocked: number; tokens: number | null }[];
  changes: { kind: string; gateway: string }[];
  gateway: string | null;
  gateways: { gateway: string; requests: number; blocked: number; tokens: number | null }[];
}

interface Decision {
  id: string;
  gateway_id: string;
  allowed: number;
}

const sum = (rows: { allowed: number; blocked: number }[]) => rows.reduce((n, r) => ({ allowed: n.allowed + r.allowed, blocked: n.blocked + r.blocked }), { allowed: 0, blocked: 0 });

/** Per gateway from the central tables, by SQL of the test's own: what the dashboard must show. */
async function centralTotals(gatewayId: string | null): Promise<{ gateway: string; requests: number; blocked: number; tokens: number | null }[]> {
  return sql(
    `SELECT u.gateway_id AS gateway, count(*)::int AS requests, (count(*) FILTER (WHERE NOT u.allowed))::int AS blocked, sum(o.total_tokens)::int AS tokens
       FROM usagelog u LEFT JOIN usagelog_outcome o ON o.gateway_id = u.gateway_id AND o.log_id = u.id
      WHERE $1::text IS NULL OR u.gateway_id = $1 GROUP BY u.gateway_id ORDER BY u.gateway_id`,
    [gatewayId],
  );
}

/**
 * Two `govgate serve` in fleet mode, each with the admin dashboard, serve
 * allowed and blocked requests and ship them; the test then reads the
 * dashboard of each through its real HTTP API.
 */
test.before(async () => {
  if (!installed) return;
  [cluster, upstream] = await Promise.all([startPostgres(), startMockUpstream()]);
  central = new FleetDatabase(cluster.url, { applicationName: 'govgate test', onIdleError: () => {} });
  await migrateCentralSchema(central);
  const acme = (await createCentralKey(central, 'acme', null, 'test')).key;
  const globex = (await createCentralKey(central, 'globex', null, 'test')).key;
  for (const { id } of TRAFFIC) {
    const dir = makeGatewayDir();
    dirs.push(dir);
    const file = writeGatewayYaml(dir, upstream.url);
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, fleet: { database_url_env: 'DATABASE_URL', gateway_id: id } }, null, 2));
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  }
  gateways.push(...(await Promise.all(dirs.map((cwd) => startServe({ cwd, env: env() })))));
  for (const [i, t] of TRAFFIC.entries()) {
    const url = gateways[i]!.url;
    for (let n = 0; n < t.acme; n++) if ((await chat(url, acme, false)) !== 200) throw new Error(`${t.id}: an allowed request was refused`);
    for (let n = 0; n < t.globex; n++) if ((await chat(url, globex, false)) !== 200) throw new Error(`${t.id}: an allowed request was refused`);
    for (let n = 0; n < t.blocked; n++) if ((await chat(url, acme, true)) !== 403) throw new Error(`${t.id}: a restricted request was not blocked`);
  }
  // Shipped: every decision, the outcome of every forwarded request, and each gateway's start events.
  for (const deadline = Date.now() + SHIP_WAIT_MS; ; ) {
    const shipped = await sql<{ gateway: string; decisions: number; outcomes: number; events: number }>(
      `SELECT g.gateway_id AS gateway,
              (SELECT count(*)::int FROM usagelog u WHERE u.gateway_id = g.gateway_id) AS decisions,
              (SELECT count(*)::int FROM usagelog_outcome o WHERE o.gateway_id = g.gateway_id AND o.total_tokens IS NOT NULL) AS outcomes,
              (SELECT count(*)::int FROM audit_event e WHERE e.gateway_id = g.gateway_id) AS events
         FROM fleet_gateway g ORDER BY g.gateway_id`,
    );
    const done = TRAFFIC.every((t) => {
      const s = shipped.find((r) => r.gateway === t.id);
      return s !== undefined && s.decisions === t.acme + t.globex + t.blocked && s.outcomes === t.acme + t.globex && s.events >= 2;
    });
    if (done) break;
    if (Date.now() > deadline) throw new Error(`rows not shipped within ${SHIP_WAIT_MS} ms: ${JSON.stringify(shipped)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
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

pgTest(`each gateway's dashboard shows the whole fleet: both gateways' totals, as the central tables hold them${skipNote}`, async (t) => {
  const expected = await centralTotals(null);
  t.deepEqual(expected.map((g) => g.gateway), ['gw-a', 'gw-b']);
  const [gwA, gwB] = expected as [(typeof expected)[number], (typeof expected)[number]];
  t.deepEqual([gwA.requests, gwA.blocked, gwB.requests, gwB.blocked], [5, 1, 3, 2], 'the traffic sent');

  for (const gateway of gateways) {
    const { status, body: s } = await admin<Summary>(gateway, '/admin/api/summary');
    t.is(status, 200);
    t.is(s.gateway, null);
    t.deepEqual(s.gateways, expected, 'the per-gateway breakdown equals the central counts');
    const requests = expected.reduce((n, g) => n + g.requests, 0);
    const blocked = expected.reduce((n, g) => n + g.blocked, 0);
    t.deepEqual(sum(s.hourly), { allowed: requests - blocked, blocked });
    t.deepEqual(sum(s.daily), { allowed: requests - blocked, blocked });
    t.is(s.risk.reduce((n, b) => n + b.count, 0), requests);
    t.deepEqual(s.blocking, [{ cause: 'rule restricted-data', count: blocked }]);
    const customers = await sql<Summary['customers'][number]>(
      `SELECT u.customer_id AS customer, u.model, count(*)::int AS requests, (count(*) FILTER (WHERE NOT u.allowed))::int AS blocked, sum(o.total_tokens)::int AS tokens
         FROM usagelog u LEFT JOIN usagelog_outcome o ON o.gateway_id = u.gateway_id AND o.log_id = u.id
        GROUP BY u.customer_id, u.model ORDER BY requests DESC, customer`,
    );
    t.deepEqual(s.customers.map(({ customer, model, requests: r, blocked: b, tokens }) => ({ customer, model, requests: r, blocked: b, tokens })), customers);
    const changeGateways = new Set(s.changes.map((c) => c.gateway));
    t.true(changeGateways.has('gw-a') && changeGateways.has('gw-b'), 'control events of both gateways');
    t.true(s.changes.some((c) => c.kind === 'key.created' && c.gateway === '@fleet'), 'and the key changes made in fleet mode');

    const decisions = (await admin<{ decisions: Decision[] }>(gateway, '/admin/api/decisions')).body.decisions;
    const ids = await sql<{ gateway_id: string; id: string }>('SELECT gateway_id, id FROM usagelog');
    const key = (d: { gateway_id: string; id: string }) => `${d.gateway_id}/${d.id}`;
    t.deepEqual(decisions.map(key).sort(), ids.map(key).sort(), 'every central decision, with its gateway');
    t.deepEqual(Object.keys(decisions[0]!).sort(), ['allowed', 'api_key_id', 'created_at', 'customer_id', 'gateway_id', 'id', 'model', 'operation', 'reason', 'risk_score', 'status', 'total_tokens']);
    t.false(JSON.stringify(s).includes('secret prompt text') || JSON.stringify(decisions).includes('secret prompt text'), 'no request content');
  }

  const list = (await admin<{ gateways: { gateway: string; shipped_at: string }[] }>(gateways[1]!, '/admin/api/gateways')).body.gateways;
  t.deepEqual(list.map((g) => g.gateway), ['gw-a', 'gw-b']);
  t.true(list.every((g) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/.test(g.shipped_at)), JSON.stringify(list));
});

pgTest(`?gateway=ID narrows the summary, the decisions and the changes to that gateway${skipNote}`, async (t) => {
  for (const { id } of TRAFFIC) {
    const [expected] = await centralTotals(id);
    // Asked of the other gateway's dashboard: the filter, not the gateway serving the page, decides.
    const other = gateways[TRAFFIC.findIndex((g) => g.id !== id)]!;
    const { status, body: s } = await admin<Summary>(other, `/admin/api/summary?gateway=${id}`);
    t.is(status, 200);
    t.is(s.gateway, id);
    t.deepEqual(s.gateways, [expected]);
    t.deepEqual(sum(s.hourly), { allowed: expected!.requests - expected!.blocked, blocked: expected!.blocked });
    t.is(s.customers.reduce((n, c) => n + c.requests, 0), expected!.requests);
    t.true(s.changes.length > 0 && s.changes.every((c) => c.gateway === id), JSON.stringify(s.changes.map((c) => c.gateway)));

    const decisions = (await admin<{ decisions: Decision[] }>(other, `/admin/api/decisions?gateway=${id}`)).body.decisions;
    t.is(decisions.length, expected!.requests);
    t.true(decisions.every((d) => d.gateway_id === id));
    t.is(decisions.filter((d) => d.allowed === 0).length, expected!.blocked);
  }
  const unknown = await admin<{ error: { code: string } }>(gateways[0]!, '/admin/api/summary?gateway=gw-nope');
  t.is(unknown.status, 404, 'an id that never shipped is refused, not shown as an empty fleet');
  t.is(unknown.body.error.code, 'route_not_found');
});

pgTest(`the page has the gateway select and the per-gateway panel${skipNote}`, async (t) => {
  const res = await fetch(`${gateways[0]!.url}/admin?gateway=gw-b`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.is(res.status, 200);
  const html = await res.text();
  t.regex(html, /<select id="gateway"><option value="">all gateways<\/option><\/select>/);
  t.regex(html, /<table id="gateways">/);
  t.regex(html, /<th>log id<\/th><th>gateway<\/th>/);
});

pgTest(`every dashboard statement reads the central tables through an index${skipNote}`, async (t) => {
  const plans = await new CentralDashboard(central!).plans();
  t.is(Object.keys(plans).length, 12);
  for (const [name, plan] of Object.entries(plans)) {
    t.notRegex(plan, /Seq Scan on (usagelog|usagelog_outcome|audit_event)\b/, `${name}:\n${plan}`);
    t.regex(plan, /Index/, `${name}:\n${plan}`);
  }
  t.regex(plans['hourCounts.one']!, /usagelog_gateway_created_at/, plans['hourCounts.one']);
  t.regex(plans['hourCounts.all']!, /usagelog_created_at/, plans['hourCounts.all']);
  t.regex(plans['changes.one']!, /audit_event_pkey/, plans['changes.one']);
  for (const name of ['tokens.all', 'tokens.one', 'latest.all', 'latest.one']) {
    t.regex(plans[name]!, /Index Cond: \(log_id = (u|usagelog)\.id\)/, `${name}: each decision's outcome is one index lookup:\n${plans[name]}`);
  }
});

/** Debian's package; CHROMIUM_PATH points elsewhere (as in test/admin/dashboard-browser.test.ts). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

pgTest(`in a browser, the page narrowed to one gateway fills the select, the gateways panel and the gateway column${skipNote}`, async (t) => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 20_000 }).catch((err: unknown) => String(err).split('\n')[0]!);
  if (typeof browser === 'string') {
    t.log(`Chromium cannot start (${CHROMIUM}); the page is checked as HTML only: ${browser}`);
    t.pass();
    return;
  }
  try {
    const context = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => {
      // Chromium asks for /favicon.ico on a first visit; the gateway has none (404), which is not the page's doing.
      if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) problems.push(`${m.text()} (${m.location().url})`);
    });
    await page.goto(`${gateways[0]!.url}/admin?gateway=gw-b`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
    const [expected] = await centralTotals('gw-b');
    t.deepEqual(await page.$$eval('#gateway option', (os) => os.map((o) => [(o as unknown as { value: string }).value, (o as unknown as { selected: boolean }).selected])), [['', false], ['gw-a', false], ['gw-b', true]]);
    const rows = await page.$$eval('#gateways tbody tr', (trs) => trs.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    t.is(rows.length, 1);
    t.deepEqual(rows[0]!.slice(0, 4), ['gw-b', String(expected!.requests), String(expected!.blocked), String(expected!.tokens)]);
    const decisionGateways = await page.$$eval('#decisions tbody tr', (trs) => trs.map((r) => r.querySelector('td:last-child')?.textContent ?? ''));
    t.deepEqual(decisionGateways, new Array<string>(expected!.requests).fill('gw-b'));
    t.deepEqual(problems, [], 'no script errors and no CSP violations');
  } finally {
    await browser.close();
  }
});

pgTest(`with the fleet database down the dashboard answers 503, never a partial or local view${skipNote}`, async (t) => {
  cluster!.stop();
  t.teardown(() => cluster!.start());
  // The hour in progress is cached for 2 seconds; past that the summary must read PostgreSQL again.
  await new Promise((resolve) => setTimeout(resolve, 2100));
  for (const apiPath of ['/admin/api/summary', '/admin/api/decisions', '/admin/api/gateways']) {
    const { status, body } = await admin<{ error: { code: string; message: string } }>(gateways[0]!, apiPath);
    t.is(status, 503, apiPath);
    t.is(body.error.code, 'audit_unavailable');
    t.false(body.error.message.includes('postgres://'));
  }
  t.is((await admin<{ hash: string }>(gateways[0]!, '/admin/api/policy')).status, 200, 'the policy in force is this gateway\'s own and still shown');
});
