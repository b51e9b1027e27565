import test from 'ava';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

test.serial('chat completion through the official SDK is forwarded with the provider key', async (t) => {
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  const { data: completion, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  t.is(completion.choices[0]?.message.content, 'mock reply');
  t.is(response.headers.get('x-governance-decision'), 'allow');
  const logId = response.headers.get('x-governance-log-id');
  t.truthy(logId);
  t.truthy(response.headers.get('x-request-id'));

  const seen = upstream.received.at(-1)!;
  t.is(seen.path, '/v1/chat/completions');
  t.is(seen.headers.authorization, `Bearer ${UPSTREAM_SECRET}`);
  const rows = sqliteJson(gw.dbPath, `SELECT customer_id, model, operation, allowed FROM usagelog WHERE id = '${logId}'`);
  t.deepEqual(rows, [{ customer_id: 'acme', model: 'gpt-4o-mini', operation: 'chat.completions', allowed: 1 }]);
});

test.serial('blocked request raises PermissionDeniedError with the reason and is not retried', async (t) => {
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  const before = upstream.received.length;
  const err = await t.throwsAsync(
    client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'X-Governance-Metadata': JSON.stringify({ data_classification: 'restricted' }) } },
    ),
    { instanceOf: OpenAI.PermissionDeniedError },
  );
  t.is(err?.status, 403);
  t.is(err?.code, 'policy_blocked');
  t.regex(err?.message ?? '', /rule restricted-data: Restricted data may not be sent to any model/);
  t.is(upstream.received.length, before, 'nothing was forwarded');
});
