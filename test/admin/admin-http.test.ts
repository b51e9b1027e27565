import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { AdminAuth } from '../../gateway/admin/admin-auth.js';
import { AdminRoutes } from '../../gateway/admin/admin-routes.js';
import { LoginThrottle } from '../../gateway/admin/login-throttle.js';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { WriteLock } from '../helpers/write-lock.js';
import { ADMIN_TOKEN, byGroup, closeFetchers, DASHBOARD, DASHBOARD_POLICY, EXPECTED_BLOCKING, expectedFromDb, fetchFrom, seedDecisions, type Fetch } from './support.js';

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: DASHBOARD_POLICY, env: { OPENAI_API_KEY: UPSTREAM_SECRET, GOVGATE_ADMIN_TOKEN: ADMIN_TOKEN } });
  await seedDecisions(gw);
});

test.after.always(async () => {
  await closeFetchers();
  await gw?.close();
  await upstream?.close();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Where tests that send no wrong tokens come from; the global fetch's types are not undici's. */
const loopback = fetchFrom('127.0.0.1');

async function login(token: string, from: Fetch = loopback, base = gw.url) {
  return from(`${base}/admin/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
    redirect: 'manual',
  });
}

for (const [title, env] of [
  ['unset', {}],
  ['empty', { GOVGATE_ADMIN_TOKEN: '' }],
] as const) {
  test(`with GOVGATE_ADMIN_TOKEN ${title}, /admin does not exist`, async (t) => {
    const plain = await startHarness(upstream.url, { env: { OPENAI_API_KEY: UPSTREAM_SECRET, ...env } });
    try {
      for (const path of ['/admin', '/admin/', '/admin/api/summary', '/admin/assets/dashboard.js']) {
        const res = await fetch(`${plain.url}${path}`, { headers: bearer('') });
        t.is(res.status, 404, path);
        t.is(((await res.json()) as { error: { code: string } }).error.code, 'route_not_found');
      }
      const res = await fetch(`${plain.url}/admin/login`, { method: 'POST', body: 'token=', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      t.is(res.status, 404);
    } finally {
      await plain.close();
    }
  });
}

test('without credentials the page answers 401 with the login form, the API 401 in JSON', async (t) => {
  const page = await fetch(`${gw.url}/admin`);
  t.is(page.status, 401);
  t.regex(page.headers.get('content-type') ?? '', /^text\/html/);
  const html = await page.text();
  t.regex(html, /<form method="post" action="\/admin\/login">/);
  t.notRegex(html, /<script/, 'the login page runs no script');

  const api = await fetch(`${gw.url}/admin/api/summary`);
  t.is(api.status, 401);
  t.is(((await api.json()) as { error: { code: string } }).error.code, 'invalid_admin_token');
});

test('a wrong bearer token is refused; the right one is served', async (t) => {
  for (const [i, token] of ['wrong', `${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1), ''].entries()) {
    // Eight wrong tokens from one address would be throttled after five: each token gets an address of its own.
    const from = fetchFrom(`127.0.0.${10 + i}`);
    const api = await from(`${gw.url}/admin/api/summary`, { headers: bearer(token) });
    t.is(api.status, 401, `token "${token}"`);
    const page = await from(`${gw.url}/admin`, { headers: bearer(token) });
    t.is(page.status, 401);
  }
  const page = await fetch(`${gw.url}/admin`, { headers: bearer(ADMIN_TOKEN) });
  t.is(page.status, 200);
  t.regex(await page.text(), /<canvas id="hourly-chart">/);
  const api = await fetch(`${gw.url}/admin/api/summary`, { headers: bearer(ADMIN_TOKEN) });
  t.is(api.status, 200);
});

test('the login form sets an HttpOnly, SameSite=Strict, /admin-scoped session cookie that is not the token', async (t) => {
  const refused = await login('not-the-token');
  t.is(refused.status, 401);
  t.is(refused.headers.get('set-cookie'), null);
  t.regex(await refused.text(), /not the admin token/);

  const res = await login(ADMIN_TOKEN);
  t.is(res.status, 303);
  t.is(res.headers.get('location'), '/admin');
  const cookie = res.headers.get('set-cookie') ?? '';
  t.regex(cookie, /^govgate_admin=[^;]+;/);
  t.regex(cookie, /; HttpOnly/);
  t.regex(cookie, /; SameSite=Strict/);
  t.regex(cookie, /; Path=\/admin(;|$)/);
  t.false(cookie.includes(ADMIN_TOKEN), 'the cookie never carries the token');
  const session = cookie.split(';')[0]!;

  const api = await fetch(`${gw.url}/admin/api/summary`, { headers: { cookie: session } });
  t.is(api.status, 200);
  const tampered = session.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
  t.is((await fetch(`${gw.url}/admin/api/summary`, { headers: { cookie: tampered } })).status, 401);
  const extended = session.replace(/=(\d+)\./, (_m, exp: string) => `=${Number(exp) + 86_400}.`);
  t.is((await fetch(`${gw.url}/admin/api/summary`, { headers: { cookie: extended } })).status, 401, 'the expiry is signed');

  const out = await fetch(`${gw.url}/admin/logout`, { method: 'POST', headers: { cookie: session }, redirect: 'manual' });
  t.is(out.status, 303);
  t.regex(out.headers.get('set-cookie') ?? '', /^govgate_admin=; .*Max-Age=0/);
});

test('every admin answer forbids framing, inline script and caching of data', async (t) => {
  for (const path of ['/admin', '/admin/api/summary', '/admin/api/decisions', '/admin/api/policy']) {
    const res = await fetch(`${gw.url}${path}`, { headers: bearer(ADMIN_TOKEN) });
    t.is(res.status, 200, path);
    const csp = res.headers.get('content-security-policy') ?? '';
    t.regex(csp, /default-src 'none'/);
    t.regex(csp, /script-src 'self'(;|$)/, 'no unsafe-inline, no CDN');
    t.regex(csp, /frame-ancestors 'none'/);
    t.is(res.headers.get('x-frame-options'), 'DENY');
    t.is(res.headers.get('cache-control'), 'no-store');
    await res.arrayBuffer();
  }
  const chart = await fetch(`${gw.url}/admin/assets/chart.umd.min.js`);
  t.is(chart.status, 200, 'assets are public code, served without a session');
  t.regex(chart.headers.get('content-type') ?? '', /^text\/javascript/);
  t.regex(await chart.text(), /Chart/);
  const post = await fetch(`${gw.url}/admin/api/summary`, { method: 'POST', headers: bearer(ADMIN_TOKEN) });
  t.is(post.status, 405);
});

test('the summary API matches the audit database', async (t) => {
  const expected = expectedFromDb(gw.dbPath);
  const summary = (await (await fetch(`${gw.url}/admin/api/summary`, { headers: bearer(ADMIN_TOKEN) })).json()) as {
    hourly: { hour: string; allowed: number; blocked: number }[];
    daily: { day: string; allowed: number; blocked: number }[];
    risk: { count: number }[];
    blocking: { cause: string; count: number }[];
    customers: Expected['customers'];
  };
  t.is(summary.hourly.length, 24);
  t.is(summary.daily.length, 30);
  for (const h of summary.hourly) {
    t.deepEqual({ allowed: h.allowed, blocked: h.blocked }, expected.hourly.get(h.hour.slice(11)) ?? { allowed: 0, blocked: 0 }, h.hour);
  }
  for (const d of summary.daily) {
    t.deepEqual({ allowed: d.allowed, blocked: d.blocked }, expected.daily.get(d.day.slice(5)) ?? { allowed: 0, blocked: 0 }, d.day);
  }
  t.deepEqual(summary.risk.map((b) => b.count), expected.risk);
  t.deepEqual(summary.blocking, EXPECTED_BLOCKING);
  t.deepEqual(byGroup(summary.customers), byGroup(expected.customers));
  t.true(expected.customers.some((c) => c.tokens !== null && c.tokens > 0), 'tokens from the outcome rows are shown');

  const { decisions } = (await (await fetch(`${gw.url}/admin/api/decisions`, { headers: bearer(ADMIN_TOKEN) })).json()) as { decisions: { id: string; meta?: unknown }[] };
  t.deepEqual(decisions.map((d) => d.id), expected.latestIds);
  t.false('meta' in decisions[0]!, 'decisions carry metadata columns only');
});

type Expected = ReturnType<typeof expectedFromDb>;

test('single-node mode has no fleet: the gateway filter is refused, not ignored, and there is no gateway list', async (t) => {
  for (const path of ['/admin/api/summary?gateway=gw-1', '/admin/api/decisions?gateway=gw-1']) {
    const res = await fetch(`${gw.url}${path}`, { headers: bearer(ADMIN_TOKEN) });
    t.is(res.status, 400, path);
    t.is(((await res.json()) as { error: { code: string } }).error.code, 'invalid_request');
  }
  const list = await fetch(`${gw.url}/admin/api/gateways`, { headers: bearer(ADMIN_TOKEN) });
  t.is(list.status, 404);
  await list.arrayBuffer();
  const summary = (await (await fetch(`${gw.url}/admin/api/summary`, { headers: bearer(ADMIN_TOKEN) })).json()) as Record<string, unknown>;
  t.deepEqual(Object.keys(summary).sort(), ['blocking', 'changes', 'customers', 'daily', 'generated_at', 'hourly', 'risk'], 'no fleet fields');
  const page = await (await fetch(`${gw.url}/admin`, { headers: bearer(ADMIN_TOKEN) })).text();
  t.false(page.includes('id="gateway"'), 'no gateway select');
});

interface Change {
  created_at: string;
  kind: string;
  actor: string;
  summary: string;
}

test('the changes panel lists the control events newest first: start, a failed login by its address, a policy edit', async (t) => {
  // A gateway of its own, so that the other tests' logins are not among its events.
  const own = await startHarness(upstream.url, { policy: DASHBOARD_POLICY, env: { OPENAI_API_KEY: UPSTREAM_SECRET, GOVGATE_ADMIN_TOKEN: ADMIN_TOKEN } });
  try {
    const changesNow = async () =>
      ((await (await fetch(`${own.url}/admin/api/summary`, { headers: bearer(ADMIN_TOKEN) })).json()) as { changes: Change[] }).changes;
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    const until = async (done: (changes: Change[]) => boolean): Promise<Change[]> => {
      let changes = await changesNow();
      // Events are committed by the audit writer's next flush and reloads are polled, so the test waits for them.
      for (const deadline = Date.now() + 3000; !done(changes) && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        changes = await changesNow();
      }
      return changes;
    };

    const started = await until((c) => c.length >= 2);
    t.deepEqual(started.map((c) => [c.kind, c.actor]), [['policy.loaded', 'gateway'], ['gateway.started', 'gateway']]);
    t.is(started[0]!.summary, `policy ${sha(DASHBOARD_POLICY).slice(0, 12)}, 3 rules, enforce`);

    const wrongToken = 'wrong-token-for-the-changes-panel';
    t.is((await login(wrongToken, fetchFrom('127.0.0.40'), own.url)).status, 401);
    const edited = DASHBOARD.blockThreshold(75).yaml();
    writeFileSync(own.policyFile, edited);

    const changes = await until((c) => c.length >= 4);
    t.deepEqual(changes.map((c) => [c.kind, c.actor]), [
      ['policy.loaded', 'gateway'],
      ['admin.login_failed', '127.0.0.40'],
      ['policy.loaded', 'gateway'],
      ['gateway.started', 'gateway'],
    ]);
    t.is(changes[0]!.summary, `policy ${sha(edited).slice(0, 12)}, 3 rules, enforce`);
    t.is(changes[1]!.summary, '127.0.0.40');
    t.true(changes.every((c, i) => i === 0 || c.created_at <= changes[i - 1]!.created_at));
    const shown = JSON.stringify(changes);
    t.false(shown.includes(wrongToken), 'a wrong token is never recorded nor shown');
    t.false(shown.includes(ADMIN_TOKEN));
  } finally {
    await own.close();
  }
});

// Serial: it edits the policy file of the gateway the other tests use.
test.serial('the policy panel shows the hash in force, when it was loaded, and the last rejected edit', async (t) => {
  const policyNow = async () =>
    (await (await fetch(`${gw.url}/admin/api/policy`, { headers: bearer(ADMIN_TOKEN) })).json()) as {
      hash: string;
      loaded_at: string;
      last_rejected: { at: string; file: string; line: number; col: number; message: string } | null;
    };
  const before = await policyNow();
  t.is(before.hash, createHash('sha256').update(DASHBOARD_POLICY).digest('hex'));
  t.false(Number.isNaN(Date.parse(before.loaded_at)));
  t.is(before.last_rejected, null);

  writeFileSync(gw.policyFile, DASHBOARD_POLICY.replace('block_threshold: 70', 'block_threshold: lots'));
  t.teardown(() => writeFileSync(gw.policyFile, DASHBOARD_POLICY));
  let rejected = before.last_rejected;
  for (const deadline = Date.now() + 3000; rejected === null && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    rejected = (await policyNow()).last_rejected;
  }
  t.truthy(rejected, 'the rejection is shown within the reload interval');
  t.true(rejected!.file.endsWith('config/policy.yaml'), rejected!.file);
  t.is(rejected!.line, 3);
  t.regex(rejected!.message, /block_threshold/);
  t.is((await policyNow()).hash, before.hash, 'the last good policy stays in force');
});

// Serial: while the lock is held, the other tests' logins could not record their events.
test.serial('the dashboard reads on its own connection: it answers while another process holds the write lock', async (t) => {
  const lock = await WriteLock.take(gw.dbPath);
  try {
    const res = await fetch(`${gw.url}/admin/api/decisions`, { headers: bearer(ADMIN_TOKEN) });
    t.is(res.status, 200);
    t.true(((await res.json()) as { decisions: unknown[] }).decisions.length > 0);
  } finally {
    await lock.release();
  }
});

async function errorCode(res: { json(): Promise<unknown> }): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

test('the sixth wrong login from one address is answered 429 with Retry-After; other addresses and sessions are unaffected', async (t) => {
  const attacker = fetchFrom('127.0.0.20');
  const admin = fetchFrom('127.0.0.21');
  for (let i = 1; i <= 5; i++) t.is((await login(`wrong-token-${i}`, attacker)).status, 401, `wrong login ${i}`);

  const sixth = await login('wrong-token-6', attacker);
  t.is(sixth.status, 429);
  const retryAfter = Number(sixth.headers.get('retry-after'));
  t.true(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${sixth.headers.get('retry-after')}`);
  t.is(await errorCode(sixth), 'rate_limit_exceeded');
  t.is(sixth.headers.get('set-cookie'), null);
  t.is(sixth.headers.get('x-frame-options'), 'DENY', 'the 429 carries the dashboard security headers');

  const asBearer = await attacker(`${gw.url}/admin/api/summary`, { headers: bearer(ADMIN_TOKEN) });
  t.is(asBearer.status, 429, 'bearer tokens from a throttled address wait too, even the right one');
  t.truthy(asBearer.headers.get('retry-after'));
  await asBearer.arrayBuffer();

  const signedIn = await login(ADMIN_TOKEN, admin);
  t.is(signedIn.status, 303, 'another address signs in');
  const session = (signedIn.headers.get('set-cookie') ?? '').split(';')[0]!;
  t.is((await login(ADMIN_TOKEN, attacker)).status, 429, 'a success from another address does not reset this one');

  // A session cookie is not a token guess (an HMAC nobody can forge), so it is served from any address.
  const withSession = await attacker(`${gw.url}/admin/api/summary`, { headers: { cookie: session } });
  t.is(withSession.status, 200);
  await withSession.arrayBuffer();
});

test('wrong bearer tokens on the page and the API count against the address as wrong logins do', async (t) => {
  const from = fetchFrom('127.0.0.22');
  for (let i = 1; i <= 5; i++) {
    const res = await from(`${gw.url}${i % 2 ? '/admin/api/summary' : '/admin'}`, { headers: { authorization: i === 5 ? 'Basic d3Jvbmc6dG9rZW4=' : `Bearer wrong-${i}` } });
    t.is(res.status, 401, `wrong bearer ${i}`);
    await res.arrayBuffer();
  }
  const page = await from(`${gw.url}/admin`, { headers: bearer('wrong-6') });
  t.is(page.status, 429);
  t.regex(page.headers.get('retry-after') ?? '', /^\d+$/);
  t.is(await errorCode(page), 'rate_limit_exceeded');
  t.is((await login(ADMIN_TOKEN, from)).status, 429, 'the login form shares the count');
  const anonymous = await from(`${gw.url}/admin`);
  t.is(anonymous.status, 401, 'a request without credentials is not refused as throttled: it presents no token');
  await anonymous.arrayBuffer();
});

// Serial: it counts token comparisons on AdminAuth's prototype, which every other test's logins would add to.
test.serial('with an injected clock: throttled until the window frees, then the right token works from the same address; tokens sent meanwhile are not compared', async (t) => {
  let now = 1_700_000_000_000;
  const routes = new AdminRoutes({
    token: ADMIN_TOKEN,
    auditPath: gw.dbPath,
    policy: gw.gateway.context.policy,
    policyPath: gw.policyFile,
    logger: gw.gateway.context.logger,
    throttle: new LoginThrottle({ maxFailures: 5, windowMs: 60_000, now: () => now }),
  });
  const server = createServer((req, res) => void routes.handle(req, res, new URL(req.url ?? '/', 'http://admin').pathname, 'test'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const from = fetchFrom('127.0.0.30');

  // Counts every comparison of a presented token; the method is private, reached only to observe it.
  const proto = AdminAuth.prototype as unknown as { tokenMatches(this: unknown, candidate: string): boolean };
  const original = proto.tokenMatches;
  let compared = 0;
  proto.tokenMatches = function (this: unknown, candidate: string) {
    compared++;
    return original.call(this, candidate);
  };
  try {
    for (let i = 1; i <= 5; i++) t.is((await login(`wrong-token-${i}`, from, base)).status, 401);
    t.is(compared, 5);

    const sixth = await login('wrong-token-6', from, base);
    t.is(sixth.status, 429);
    t.is(sixth.headers.get('retry-after'), '60');
    t.is(await errorCode(sixth), 'rate_limit_exceeded');
    const bearerWhileThrottled = await from(`${base}/admin/api/summary`, { headers: bearer('wrong-token-7') });
    t.is(bearerWhileThrottled.status, 429);
    await bearerWhileThrottled.arrayBuffer();
    t.is(compared, 5, 'tokens sent while throttled are not compared');

    now += 59_999;
    const lastMillisecond = await login(ADMIN_TOKEN, from, base);
    t.is(lastMillisecond.status, 429, 'the window has not freed yet');
    t.is(lastMillisecond.headers.get('retry-after'), '1', 'whole seconds, rounded up');
    t.is(compared, 5);

    now += 1;
    const signedIn = await login(ADMIN_TOKEN, from, base);
    t.is(signedIn.status, 303, 'the right token works from the same address once the window frees');
    t.regex(signedIn.headers.get('set-cookie') ?? '', /^govgate_admin=/);
    t.is(compared, 6);
  } finally {
    proto.tokenMatches = original;
    server.closeAllConnections();
    server.close();
    routes.close();
  }
});
