import test from 'ava';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { decisionRow, errorBody, logIdOf } from './support.js';

// Distinct secrets per provider, read from distinct variables, prove which api_key_env each request used.
const CLAUDE_SECRET = 'sk-claude-provider-secret';
const DEFAULT_SECRET = 'sk-default-provider-secret';

let claude: MockUpstream;
let fallback: MockUpstream;
let gw: Harness;
let narrow: Harness;

test.before(async () => {
  claude = await startMockUpstream();
  fallback = await startMockUpstream();
  gw = await startHarness(fallback.url, {
    providers: [
      { name: 'claude-host', base_url: claude.url, models: ['claude-*'], api_key_env: 'CLAUDE_PROVIDER_KEY' },
      { name: 'openai', base_url: fallback.url, models: ['*'], api_key_env: 'DEFAULT_PROVIDER_KEY' },
    ],
    env: { CLAUDE_PROVIDER_KEY: CLAUDE_SECRET, DEFAULT_PROVIDER_KEY: DEFAULT_SECRET },
  });
  // No catch-all provider here, so some models are served by nobody.
  narrow = await startHarness(fallback.url, {
    providers: [{ name: 'openai', base_url: fallback.url, models: ['gpt-*', 'text-embedding-*'], api_key_env: 'DEFAULT_PROVIDER_KEY' }],
    env: { DEFAULT_PROVIDER_KEY: DEFAULT_SECRET },
  });
});

test.after.always(async () => {
  await gw?.close();
  await narrow?.close();
  await claude?.close();
  await fallback?.close();
});

function counts(): { claude: number; fallback: number } {
  return { claude: claude.received.length, fallback: fallback.received.length };
}

test.serial('a model matching the first provider goes there, even though a later provider matches too', async (t) => {
  const client = gw.sdk(gw.createKey('routing-a').key);
  const before = counts();
  const completion = await client.chat.completions.create({ model: 'claude-3-5-sonnet', messages: [{ role: 'user', content: 'x' }] });
  t.is(completion.model, 'claude-3-5-sonnet');
  t.deepEqual(counts(), { claude: before.claude + 1, fallback: before.fallback });
  t.is(claude.received.at(-1)!.headers.authorization, `Bearer ${CLAUDE_SECRET}`);
});

test.serial('a model only the catch-all matches goes to the second provider with its own key', async (t) => {
  const client = gw.sdk(gw.createKey('routing-b').key);
  const before = counts();
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
  t.deepEqual(counts(), { claude: before.claude, fallback: before.fallback + 1 });
  t.is(fallback.received.at(-1)!.headers.authorization, `Bearer ${DEFAULT_SECRET}`);
});

test.serial('a model-less route goes to the first provider', async (t) => {
  const client = gw.sdk(gw.createKey('routing-c').key);
  const before = counts();
  await client.models.list();
  t.deepEqual(counts(), { claude: before.claude + 1, fallback: before.fallback });
  const seen = claude.received.at(-1)!;
  t.is(seen.method, 'GET');
  t.is(seen.path, '/v1/models');
});

test.serial('a model no provider serves gets 404 model_not_found and a blocked audit row', async (t) => {
  const client = narrow.sdk(narrow.createKey('routing-d').key);
  const before = counts();
  const err = await t.throwsAsync(
    client.chat.completions.create({ model: 'llama-3-70b', messages: [{ role: 'user', content: 'x' }] }),
    { instanceOf: OpenAI.NotFoundError },
  );
  t.is(err?.status, 404);
  t.is(err?.code, 'model_not_found');
  t.deepEqual(counts(), before);

  const rows = sqliteJson(narrow.dbPath, `SELECT model, operation, allowed FROM usagelog WHERE customer_id = 'routing-d'`);
  t.deepEqual(rows, [{ model: 'llama-3-70b', operation: 'chat.completions', allowed: 0 }]);
});

test.serial('the 404 for an unserved model names its audit row in x-governance-log-id', async (t) => {
  const { key } = narrow.createKey('routing-e');
  const res = await fetch(`${narrow.baseURL}/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mistral-embed', input: 'x' }),
  });
  t.is(res.status, 404);
  t.is((await errorBody(res)).error.code, 'model_not_found');
  t.is(res.headers.get('x-governance-decision'), 'block');
  t.like(decisionRow(narrow.dbPath, logIdOf(res.headers)), { customer_id: 'routing-e', model: 'mistral-embed', allowed: 0 });
});
