import test from 'ava';
import OpenAI from 'openai';
import { newTag, startMockUpstream, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
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

/** Which provider got the requests that carried `tag`, and with which credential. */
function arrivals(tag: Tag): { claude: string[]; fallback: string[] } {
  const seen = (upstream: MockUpstream) => upstream.tagged(tag).map((r) => `${r.method} ${r.path} ${String(r.headers.authorization)}`);
  return { claude: seen(claude), fallback: seen(fallback) };
}

test('a model matching the first provider goes there, even though a later provider matches too', async (t) => {
  const client = gw.sdk(gw.createKey('routing-a').key);
  const tag = newTag();
  const completion = await client.chat.completions.create({ model: 'claude-3-5-sonnet', messages: [{ role: 'user', content: 'x' }] }, { headers: tag });
  t.is(completion.model, 'claude-3-5-sonnet');
  t.deepEqual(arrivals(tag), { claude: [`POST /v1/chat/completions Bearer ${CLAUDE_SECRET}`], fallback: [] });
});

test('a model only the catch-all matches goes to the second provider with its own key', async (t) => {
  const client = gw.sdk(gw.createKey('routing-b').key);
  const tag = newTag();
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: tag });
  t.deepEqual(arrivals(tag), { claude: [], fallback: [`POST /v1/chat/completions Bearer ${DEFAULT_SECRET}`] });
});

test('a model-less route goes to the first provider', async (t) => {
  const client = gw.sdk(gw.createKey('routing-c').key);
  const tag = newTag();
  await client.models.list({ headers: tag });
  t.deepEqual(arrivals(tag), { claude: [`GET /v1/models Bearer ${CLAUDE_SECRET}`], fallback: [] });
});

test('a model no provider serves gets 404 model_not_found and a blocked audit row', async (t) => {
  const client = narrow.sdk(narrow.createKey('routing-d').key);
  const tag = newTag();
  const err = await t.throwsAsync(
    client.chat.completions.create({ model: 'llama-3-70b', messages: [{ role: 'user', content: 'x' }] }, { headers: tag }),
    { instanceOf: OpenAI.NotFoundError },
  );
  t.is(err?.status, 404);
  t.is(err?.code, 'model_not_found');
  t.deepEqual(arrivals(tag), { claude: [], fallback: [] });

  const rows = sqliteJson(narrow.dbPath, `SELECT model, operation, allowed FROM usagelog WHERE customer_id = 'routing-d'`);
  t.deepEqual(rows, [{ model: 'llama-3-70b', operation: 'chat.completions', allowed: 0 }]);
});

test('the 404 for an unserved model names its audit row in x-governance-log-id', async (t) => {
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
