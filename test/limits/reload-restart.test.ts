import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { makeGatewayDir, startHarness, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startGateway } from '../../gateway/app.js';
import { createKey } from '../../gateway/auth/key-store.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { createErrorReporter } from '../../gateway/observability/error-reporter.js';
import { createLogger } from '../../gateway/observability/logger.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { waitFor } from '../proxy/support.js';
import { policy } from '../helpers/policy-builder.js';
import { burst, CHAT_RESERVATION, chat, countOf, setPolicy } from './support.js';

let upstream: MockUpstream;

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  await upstream?.close();
});

test('a policy reload keeps the counters of limits it did not change, and a raised limit counts on from them', async (t) => {
  const limited = (reload: number, bystander: number) =>
    policy().catchAll().customer('reload', { requests_per_minute: reload }).customer('bystander', { requests_per_minute: bystander }).yaml();
  const gw = await startHarness(upstream.url, { policy: limited(3, 10) });
  try {
    const { key } = gw.createKey('reload');
    t.is(countOf(await burst([gw.url], key, 5), 200), 3);

    const reloaded = async (text: string) => {
      setPolicy(gw.policyFile, text);
      const hash = gw.gateway.context.policy.policy.hash;
      t.truthy(await waitFor(() => (gw.gateway.context.policy.policy.hash !== hash ? true : undefined), 2000), 'the edit was picked up');
    };
    await reloaded(limited(3, 20));
    t.is((await chat(gw.url, key)).status, 429, 'an edit elsewhere does not hand out a fresh minute');

    await reloaded(limited(5, 20));
    t.is(countOf(await burst([gw.url], key, 5), 200), 2, 'raised from 3 to 5: two more, not five');
  } finally {
    await gw.close();
  }
});

test('a restarted gateway restores its counters from the audit database', async (t) => {
  const dir = makeGatewayDir();
  try {
    writeGatewayYaml(dir, upstream.url);
    writeFileSync(
      path.join(dir, 'config/policy.yaml'),
      policy().catchAll().customer('restart-rpm', { requests_per_minute: 3 }).customer('restart-tokens', { tokens_per_day: 2 * CHAT_RESERVATION + 2 }).yaml(),
    );
    const env = { OPENAI_API_KEY: UPSTREAM_SECRET };
    const start = () => startGateway(loadGatewayConfig('config/gateway.yaml', env, dir), { logger: createLogger('silent'), reporter: createErrorReporter(undefined, 'test'), env });

    const first = await start();
    // Keys are made the CLI's way, on a connection of their own, which the gateway notices.
    const keysDb = openDatabase(first.context.config.audit.path, { synchronous: 'NORMAL' });
    const rpmKey = createKey(keysDb, 'restart-rpm', null).key;
    const tokenKey = createKey(keysDb, 'restart-tokens', null).key;
    keysDb.close();
    first.context.keys.refreshIfChanged();
    try {
      t.is(countOf(await burst([first.url], rpmKey, 3), 200), 3);
      // 0 + 29 fits, then 18 + 29 fits; 36 + 29 would not.
      for (let i = 0; i < 2; i++) t.is(countOf(await burst([first.url], tokenKey, 1), 200), 1);
    } finally {
      await first.close();
    }

    const second = await start();
    try {
      const rpm = await chat(second.url, rpmKey);
      t.is(rpm.status, 429, 'the minute is not handed out again');
      t.is(rpm.headers.get('x-ratelimit-remaining-requests'), '0');
      const tokens = await chat(second.url, tokenKey);
      t.is(tokens.status, 429, 'nor is the day’s budget');
      t.is(((await tokens.json()) as { error: { code: string } }).error.code, 'budget_exceeded');
    } finally {
      await second.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('in monitor mode a request over a limit is forwarded and recorded as what would have been blocked', async (t) => {
  const gw = await startHarness(upstream.url, { policy: policy().mode('monitor').catchAll().customer('watched', { requests_per_minute: 2 }).yaml() });
  try {
    const { key } = gw.createKey('watched');
    const tag = newTag();
    t.deepEqual(await burst([gw.url], key, 4, undefined, tag), [200, 200, 200, 200]);
    t.is(upstream.tagged(tag).length, 4);
    const rows = sqliteJson<{ allowed: number; reason: string }>(gw.dbPath, "SELECT allowed, reason FROM usagelog WHERE customer_id = 'watched' ORDER BY created_at");
    t.is(rows.length, 4);
    t.true(rows.every((r) => r.allowed === 1));
    t.is(rows.filter((r) => r.reason === 'monitor mode, would block: limit requests_per_minute: customer watched 2/min').length, 2);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    t.notRegex(metrics, /govgate_limit_refusals_total\{limit="requests_per_minute"\} [1-9]/, 'nothing was refused');
  } finally {
    await gw.close();
  }
});
