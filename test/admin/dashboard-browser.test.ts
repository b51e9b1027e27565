import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { appendControlEvent, controlEvent } from '../../gateway/audit/control-log.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { REPO_ROOT, startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { ADMIN_TOKEN, byGroup, DASHBOARD_POLICY, EXPECTED_BLOCKING, expectedFromDb, HOSTILE_MODEL, seedDecisions } from './support.js';

/** Debian's package; CHROMIUM_PATH points elsewhere. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OUTPUT = path.join(REPO_ROOT, 'test/.output/admin');

let upstream: MockUpstream;
let gw: Harness;

/**
 * Chromium is launched while the file loads, before any test is declared, so
 * that a machine without it reports the tests as skipped rather than passed.
 */
async function launchChromium(): Promise<Browser | string> {
  try {
    // Root cannot use Chromium's sandbox; the page is the gateway's own, served on loopback.
    return await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 20_000 });
  } catch (err) {
    return `Chromium cannot start (${CHROMIUM}): ${String(err).split('\n')[0]}`;
  }
}
const launched = await launchChromium();
const browser: Browser | null = typeof launched === 'string' ? null : launched;
if (typeof launched === 'string') console.warn(`dashboard-browser: tests skipped: ${launched}`);
const skipNote = typeof launched === 'string' ? ` (SKIPPED: Chromium cannot start at ${CHROMIUM})` : '';
/** Serial: the refused login writes a control event, which the other test's changes panel would count half the time. */
const browserTest = browser ? test.serial : test.serial.skip;

test.before(async () => {
  if (!browser) return;
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: DASHBOARD_POLICY, env: { OPENAI_API_KEY: UPSTREAM_SECRET, GOVGATE_ADMIN_TOKEN: ADMIN_TOKEN } });
  await seedDecisions(gw);
  // What `govgate backup --actor …` records: the actor is whatever the CLI was given, the file a path; both shaped like markup here.
  const db = openDatabase(gw.dbPath, { synchronous: 'NORMAL' });
  try {
    appendControlEvent(db, controlEvent('backup.made', HOSTILE_ACTOR, { file: HOSTILE_FILE, bytes: 1, deleted: [] }));
  } finally {
    db.close();
  }
});

const HOSTILE_ACTOR = '<img src=x onerror="document.body.dataset.pwned=1">';
const HOSTILE_FILE = '<script>document.body.dataset.pwned=1</script>.db';

test.after.always(async () => {
  await browser?.close();
  await gw?.close();
  await upstream?.close();
});

interface ChartData {
  labels: string[];
  datasets: { label: string; data: number[] }[];
}

async function chartData(page: Page, canvasId: string): Promise<ChartData> {
  return page.evaluate((id) => {
    const chart = (globalThis as unknown as { Chart: { getChart(el: unknown): { data: ChartData } } }).Chart.getChart(
      (globalThis as unknown as { document: { getElementById(id: string): unknown } }).document.getElementById(id),
    );
    return JSON.parse(JSON.stringify({ labels: chart.data.labels, datasets: chart.data.datasets.map((d) => ({ label: d.label, data: d.data })) })) as ChartData;
  }, canvasId);
}

async function tableRows(page: Page, id: string): Promise<string[][]> {
  return page.$$eval(`#${id} tbody tr`, (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? '')));
}

async function signIn(page: Page, token: string): Promise<number> {
  const first = await page.goto(`${gw.url}/admin`);
  if (first?.status() !== 401) throw new Error(`expected the login page, got ${first?.status()}`);
  await page.fill('#token', token);
  const [answer] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  return answer?.status() ?? 0;
}

browserTest(`a wrong token is refused at the login form and as a bearer token${skipNote}`, async (t) => {
  const context = await browser!.newContext();
  try {
    const page = await context.newPage();
    t.is(await signIn(page, 'definitely-not-the-token'), 401);
    t.is(await page.textContent('#login-error'), 'That token is not the admin token.');
    t.deepEqual(await context.cookies(), [], 'no session cookie after a refused login');
    const api = await page.request.get(`${gw.url}/admin/api/summary`, { headers: { authorization: 'Bearer nope' } });
    t.is(api.status(), 401);
  } finally {
    await context.close();
  }
});

browserTest(`after login the charts and tables show what the audit database holds${skipNote}`, async (t) => {
  const context = await browser!.newContext({ viewport: { width: 1400, height: 1800 } });
  const problems: string[] = [];
  try {
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    t.is(await signIn(page, ADMIN_TOKEN), 200);
    // The login page itself is a 401, which Chromium logs; only what happens on the dashboard counts.
    problems.length = 0;
    await page.reload();
    const [cookie] = await context.cookies();
    t.like(cookie, { name: 'govgate_admin', httpOnly: true, sameSite: 'Strict', path: '/admin' });
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });

    const expected = expectedFromDb(gw.dbPath);
    const hourly = await chartData(page, 'hourly-chart');
    t.is(hourly.labels.length, 24);
    t.deepEqual(hourly.datasets.map((d) => d.label), ['allowed', 'blocked']);
    hourly.labels.forEach((label, i) => {
      const want = expected.hourly.get(label) ?? { allowed: 0, blocked: 0 };
      t.deepEqual([hourly.datasets[0]!.data[i], hourly.datasets[1]!.data[i]], [want.allowed, want.blocked], `hour ${label}`);
    });
    const daily = await chartData(page, 'daily-chart');
    t.is(daily.labels.length, 30);
    daily.labels.forEach((label, i) => {
      const want = expected.daily.get(label) ?? { allowed: 0, blocked: 0 };
      t.deepEqual([daily.datasets[0]!.data[i], daily.datasets[1]!.data[i]], [want.allowed, want.blocked], `day ${label}`);
    });
    t.deepEqual((await chartData(page, 'risk-chart')).datasets[0]!.data, expected.risk);

    t.deepEqual(await tableRows(page, 'blocking'), EXPECTED_BLOCKING.map((b) => [b.cause, String(b.count)]));
    const shown = (await tableRows(page, 'customers')).map(([customer, model, requests, blocked, avgRisk, tokens]) => ({
      customer: customer!,
      model: model === '' ? null : model!,
      requests: Number(requests),
      blocked: Number(blocked),
      avg_risk: Number(avgRisk),
      tokens: tokens === '' ? null : Number(tokens),
    }));
    t.deepEqual(byGroup(shown), byGroup(expected.customers));

    const decisions = await tableRows(page, 'decisions');
    t.is(decisions.length, Math.min(100, expected.total));
    t.deepEqual(decisions.map((row) => row.at(-1)), expected.latestIds);
    t.true(decisions.some((row) => row[4] === HOSTILE_MODEL), 'a markup-shaped model name is shown as text');
    const changes = await tableRows(page, 'changes');
    t.deepEqual(changes.map(([at, kind, actor]) => ({ created_at: at, kind, actor })), expected.changes);
    t.true(changes.some(([, kind, actor, summary]) => kind === 'backup.made' && actor === HOSTILE_ACTOR && summary === HOSTILE_FILE), 'a markup-shaped actor and file are shown as text');
    t.true(changes.some(([, kind, actor]) => kind === 'admin.login' && actor === '127.0.0.1'), 'this sign-in is among the changes');
    t.true(changes.filter(([, kind]) => kind === 'policy.loaded').every(([, , , summary]) => /^policy [0-9a-f]{12}, 3 rules, enforce$/.test(summary!)));
    t.is(await page.$$eval('main img, main script', (els) => els.length), 0, 'and never becomes markup');
    t.is(await page.getAttribute('body', 'data-pwned'), null);

    t.regex((await page.textContent('#policy [data-field="hash"]')) ?? '', /^[0-9a-f]{64}$/);
    t.is(await page.textContent('#policy [data-field="last_rejected"]'), 'none since start');

    t.deepEqual(problems, [], 'no script errors and no CSP violations');
    mkdirSync(OUTPUT, { recursive: true });
    const shot = path.join(OUTPUT, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.true(existsSync(shot) && statSync(shot).size > 10_000, `screenshot at ${shot}`);
  } finally {
    await context.close();
  }
});
