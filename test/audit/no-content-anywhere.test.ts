import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { closedPort } from '../helpers/closed-port.js';
import test from 'ava';
import OpenAI from 'openai';
import { generateKey } from '../../gateway/auth/key-format.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { makeGatewayDir, FIXTURE_POLICY, withEnv, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';
import { startSentryIngest, type SentryIngest } from '../helpers/sentry-ingest.js';

const CANARY = `CANARY-${randomUUID()}`;
/** Its own secret, so finding it proves this gateway leaked it. */
const PROVIDER_SECRET = `sk-upstream-${randomUUID()}`;
/** Presented keys that fail authentication: one malformed and carrying canary-like text, one well formed but unknown. */
const MALFORMED_KEY = `gg_${CANARY.replaceAll('-', '')}`;
const UNKNOWN_KEY = generateKey();

let upstream: MockUpstream;
let ingest: SentryIngest;
let serve: ServeProcess | undefined;
let dir: string;

test.before(async () => {
  upstream = await startMockUpstream();
  ingest = await startSentryIngest();
});

test.after.always(async () => {
  await serve?.stop('SIGKILL');
  await upstream?.close();
  await ingest?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function filesUnder(root: string): string[] {
  return readdirSync(root).flatMap((name) => {
    const full = path.join(root, name);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

/** Every byte under data/ (audit.db, -wal, -shm, anything else), read as raw buffers. */
function dataFiles(): { file: string; bytes: Buffer }[] {
  return filesUnder(path.join(dir, 'data')).map((file) => ({ file: path.relative(dir, file), bytes: readFileSync(file) }));
}

test('a canary sent in prompts appears nowhere: not in data/, not in the logs, not in Sentry', async (t) => {
  dir = makeGatewayDir();
  const deadPort = await closedPort();
  writeGatewayYaml(dir, upstream.url, {
    maxBodyBytes: 64 * 1024,
    providers: [
      { name: 'offline', base_url: `http://127.0.0.1:${deadPort}/v1`, models: ['offline-*'], api_key_env: 'OPENAI_API_KEY', connect_timeout_ms: 2000 },
      { name: 'openai', base_url: upstream.url, models: ['*'], api_key_env: 'OPENAI_API_KEY' },
    ],
  });
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  const [acme] = seedKeys(dir, ['acme']);
  const key = acme!.key;
  serve = await startServe({ cwd: dir, env: { OPENAI_API_KEY: PROVIDER_SECRET, SENTRY_DSN: ingest.dsn } });

  const client = withEnv({ OPENAI_BASE_URL: `${serve.url}/v1`, OPENAI_API_KEY: key }, () => new OpenAI({ maxRetries: 0 }));
  const post = (p: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${serve!.url}/v1${p}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body });

  // Allowed chat, with the canary in the system and user messages and in a tool definition.
  const chat = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: `You are ${CANARY}` },
      { role: 'user', content: `Tell me about ${CANARY}` },
    ],
    tools: [{ type: 'function', function: { name: 'lookup', description: `looks up ${CANARY}`, parameters: { type: 'object', properties: {} } } }],
  });
  t.is(chat.choices[0]?.message.content, 'mock reply');

  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `stream ${CANARY}` }],
  });
  for await (const chunk of stream) void chunk;

  const embedding = await client.embeddings.create({ model: 'text-embedding-3-small', input: [`embed ${CANARY}`] });
  t.is(embedding.data.length, 1);

  // Metadata is not content and is recorded by design, so the canary stays out of it.
  const blocked = await t.throwsAsync(
    client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `blocked ${CANARY}` }] },
      { headers: { 'X-Governance-Metadata': JSON.stringify({ data_classification: 'restricted' }) } },
    ),
    { instanceOf: OpenAI.PermissionDeniedError },
  );
  t.is(blocked?.status, 403);

  const malformed = await post('/chat/completions', `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${CANARY}"}`);
  t.is(malformed.status, 400);
  await malformed.arrayBuffer();

  const oversized = await post('/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${CANARY} `.repeat(2000) }] }));
  t.is(oversized.status, 413);
  await oversized.arrayBuffer().catch(() => undefined);

  // The provider fails and quotes the prompt back in its error body.
  upstream.setStatus('/v1/responses', 500, { error: { message: `could not process "${CANARY}"`, type: 'server_error', param: null, code: null } });
  const providerFailure = await t.throwsAsync(client.responses.create({ model: 'gpt-4o-mini', input: `respond ${CANARY}` }), { instanceOf: OpenAI.InternalServerError });
  t.is(providerFailure?.status, 500);

  const unreachable = await t.throwsAsync(
    client.chat.completions.create({ model: 'offline-model', messages: [{ role: 'user', content: `offline ${CANARY}` }] }),
    { instanceOf: OpenAI.APIError },
  );
  t.is(unreachable?.status, 502);

  for (const badKey of [MALFORMED_KEY, UNKNOWN_KEY]) {
    const res = await fetch(`${serve.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${badKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `unauthenticated ${CANARY}` }] }),
    });
    t.is(res.status, 401);
    await res.arrayBuffer();
  }

  // The canary really was on the wire, so the search below could find it if it had been kept.
  t.true(upstream.received.filter((r) => r.body.includes(CANARY)).length >= 4, 'the provider received the canary');
  t.true(upstream.received.every((r) => r.headers.authorization === `Bearer ${PROVIDER_SECRET}`), 'and the provider secret');

  const whileRunning = dataFiles();
  t.true(whileRunning.some((f) => f.file.endsWith('audit.db-wal') && f.bytes.length > 0), 'rows were written to the WAL');

  t.is(await serve.stop('SIGTERM'), 0);
  // Sentry did receive events (so its payloads were there to be leaked): the auth failure and the 502.
  await ingest.waitFor((events) => {
    const codes = events.map((e) => (e.tags as Record<string, unknown> | undefined)?.code);
    return codes.includes('invalid_api_key') && codes.includes('upstream_unavailable');
  }, 5000);

  const afterStop = dataFiles();
  t.true(afterStop.some((f) => f.file.endsWith('audit.db')));
  const logs = Buffer.from(serve.stdout() + serve.stderr(), 'utf8');
  t.true(logs.length > 0, 'the gateway did log');
  const sentry = Buffer.from(ingest.envelopes.join('\n'), 'utf8');

  const secrets: [string, string][] = [
    ['the canary', CANARY],
    ['the malformed presented key', MALFORMED_KEY],
    ['the unknown presented key', UNKNOWN_KEY],
    ['the valid gateway key', key],
    ['the provider secret', PROVIDER_SECRET],
  ];
  const places: [string, Buffer][] = [
    ...whileRunning.map((f): [string, Buffer] => [`${f.file} (while running)`, f.bytes]),
    ...afterStop.map((f): [string, Buffer] => [`${f.file} (after stop)`, f.bytes]),
    ['stdout/stderr', logs],
    ['Sentry envelopes', sentry],
  ];
  for (const [what, value] of secrets) {
    for (const [where, bytes] of places) t.false(bytes.includes(value), `${what} is not in ${where}`);
  }
  // The canary-like part of the malformed key, too, in case a key is logged truncated.
  for (const [where, bytes] of places) t.false(bytes.includes(MALFORMED_KEY.slice(3, 30)), `no part of the malformed key in ${where}`);
});
