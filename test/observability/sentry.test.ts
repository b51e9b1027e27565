import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { closedPort } from '../helpers/closed-port.js';
import test from 'ava';
import { generateKey } from '../../gateway/auth/key-format.js';
import { createErrorReporter, type ErrorReporter } from '../../gateway/observability/error-reporter.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { makeGatewayDir, FIXTURE_POLICY, startHarness, UPSTREAM_SECRET, writeGatewayYaml, type Harness, type ProviderSpec } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';
import { startSentryIngest, type SentryIngest } from '../helpers/sentry-ingest.js';

type SentryEvent = Record<string, unknown>;

let upstream: MockUpstream;
let ingest: SentryIngest;
let reporter: ErrorReporter;
let gw: Harness;
let validKey: string;
let offlinePort: number;
/** Every key presented to the gateway in this file; none may reach Sentry. */
const presentedKeys: string[] = [];

function providers(): ProviderSpec[] {
  return [
    { name: 'offline', base_url: `http://127.0.0.1:${offlinePort}/v1`, models: ['offline-*'], api_key_env: 'OPENAI_API_KEY', connect_timeout_ms: 2000 },
    { name: 'openai', base_url: upstream.url, models: ['*'], api_key_env: 'OPENAI_API_KEY' },
  ];
}

function tagsOf(e: SentryEvent): Record<string, unknown> {
  return (e.tags as Record<string, unknown> | undefined) ?? {};
}

function messageOf(e: SentryEvent): string {
  if (typeof e.message === 'string') return e.message;
  const entry = e.logentry as { formatted?: string; message?: string } | undefined;
  if (entry) return entry.formatted ?? entry.message ?? '';
  const exception = e.exception as { values?: { value?: string }[] } | undefined;
  return exception?.values?.map((v) => v.value ?? '').join(' ') ?? '';
}

function withTag(name: string, value: string): SentryEvent[] {
  return ingest.events().filter((e) => tagsOf(e)[name] === value);
}

async function chat(key: string, model = 'gpt-4o-mini'): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] }),
  });
  const body = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, code: body.error?.code };
}

test.before(async () => {
  upstream = await startMockUpstream();
  ingest = await startSentryIngest();
  offlinePort = await closedPort();
  // Sentry.init is process-wide, which is why this file is the only one that uses a real DSN in-process.
  reporter = createErrorReporter(ingest.dsn, 'test');
  gw = await startHarness(upstream.url, { reporter, providers: providers() });
  validKey = gw.createKey('acme').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
  await ingest?.close();
});

test('authentication failures are reported without the key, once per kind per minute', async (t) => {
  // Ten malformed keys in a row, as a scanner would send them.
  for (let i = 0; i < 10; i++) {
    const bogus = `gg_scan${i}${'x'.repeat(30)}`;
    presentedKeys.push(bogus);
    const r = await chat(bogus);
    t.is(r.status, 401);
    t.is(r.code, 'invalid_api_key');
  }
  await ingest.waitFor((events) => events.some((e) => tagsOf(e).failure === 'malformed'), 5000);
  await reporter.flush(2000);
  // Give a flood, had there been one, time to arrive.
  await new Promise((r) => setTimeout(r, 500));

  // By its kind: another test's unknown key is an authentication failure too, of another kind.
  const events = withTag('failure', 'malformed');
  t.is(events.length, 1, 'ten failures of one kind make one event');
  t.is(tagsOf(events[0]!).code, 'invalid_api_key');
  const message = messageOf(events[0]!);
  t.regex(message, /auth/i);
  t.regex(message, /malformed|invalid|unknown/i, 'the message names the kind of failure');
  for (const k of presentedKeys) t.false(JSON.stringify(events[0]).includes(k));
});

test('a well-formed but unknown key fails authentication and is not reported with the key', async (t) => {
  const unknown = generateKey();
  presentedKeys.push(unknown);
  const r = await chat(unknown);
  t.is(r.status, 401);
  await reporter.flush(2000);
  t.false(ingest.envelopes.some((e) => e.includes(unknown)));
});

test('a 5xx the gateway answers is reported with its code', async (t) => {
  const r = await chat(validKey, 'offline-model');
  t.is(r.status, 502);
  t.is(r.code, 'upstream_unavailable');
  await ingest.waitFor((events) => events.some((e) => tagsOf(e).code === 'upstream_unavailable'), 5000);
  t.true(withTag('code', 'upstream_unavailable').length >= 1);
});

test('a rejected policy edit is reported', async (t) => {
  const before = ingest.events().length;
  const good = readFileSync(gw.policyFile, 'utf8');
  writeFileSync(gw.policyFile, 'version: 1\nmode: enforce\nrules: [\n  - id: broken\n');
  t.teardown(() => writeFileSync(gw.policyFile, good));
  await ingest.waitFor((events) => events.slice(before).some((e) => /policy/i.test(messageOf(e))), 5000);
  t.pass();
  // The last good policy is still in force.
  t.is((await chat(validKey)).status, 200);
});

// Once every test has sent what it sends: the events of all of them are what is checked.
test.after('no event carries request data, an Authorization header or a key', async (t) => {
  await reporter.flush(2000);
  const events = ingest.events();
  t.true(events.length >= 3, `events so far: ${events.length}`);
  for (const e of events) t.is(e.request, undefined, 'no request field');
  const raw = ingest.envelopes.join('\n');
  t.false(/authorization/i.test(raw), 'no Authorization anywhere');
  t.false(/bearer /i.test(raw), 'no bearer token anywhere');
  for (const k of [...presentedKeys, validKey, UPSTREAM_SECRET]) t.false(raw.includes(k), 'no key anywhere');
});

test('without a DSN nothing is sent', async (t) => {
  const silentIngest = await startSentryIngest();
  const dir = makeGatewayDir();
  let serve: ServeProcess | undefined;
  try {
    writeGatewayYaml(dir, upstream.url, { providers: providers() });
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
    const [acme] = seedKeys(dir, ['acme']);
    // The DSN is in the environment, but not under the name the config points at.
    serve = await startServe({ cwd: dir, env: { OPENAI_API_KEY: UPSTREAM_SECRET, SENTRY_DSN: '', OTHER_DSN: silentIngest.dsn } });

    const unauthenticated = await fetch(`${serve.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer gg_not-a-real-key', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
    });
    t.is(unauthenticated.status, 401);
    await unauthenticated.arrayBuffer();
    const unreachable = await fetch(`${serve.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme!.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'offline-model', messages: [] }),
    });
    t.is(unreachable.status, 502);
    await unreachable.arrayBuffer();

    await new Promise((r) => setTimeout(r, 1500));
    t.is(silentIngest.envelopes.length, 0);
    // Shutdown flushes whatever a reporter had queued; still nothing.
    t.is(await serve.stop('SIGTERM'), 0);
    t.is(silentIngest.envelopes.length, 0);
  } finally {
    await serve?.stop('SIGKILL');
    await silentIngest.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
