import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { newTag, startMockUpstream, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, logIdOf, rowById, send } from './support.js';

// Issue 14, finding 5: POST /v1/realtime/client_secrets carries its model in `session.model` and was
// never model-checked; it also mints a credential with which the client reaches the provider directly,
// past the gateway. It is refused by default; a provider may opt in with `ephemeral_credentials: true`,
// and then `session.model` is judged like any model.

const POLICY = policy().catchAll().customer('voice', { models: ['gpt-realtime-mini'] }).yaml();

let upstream: MockUpstream;
let closed: Harness;
let open: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  closed = await startHarness(upstream.url, { policy: POLICY });
  open = await startHarness(upstream.url, {
    policy: POLICY,
    providers: [{ name: 'openai', base_url: upstream.url, models: ['*'], api_key_env: 'OPENAI_API_KEY', ephemeral_credentials: true }],
  });
});

test.after.always(async () => {
  await closed?.close();
  await open?.close();
  await upstream?.close();
});

function mint(gw: Harness, key: string, path: string, body: unknown, tag: Tag) {
  return send(gw.url, key, { path, headers: { 'content-type': 'application/json', ...tag }, body: JSON.stringify(body) });
}

test('minting a realtime client secret is refused with 403 by default, even for an allowed session.model', async (t) => {
  const { key } = closed.createKey('voice');
  const tag = newTag();
  for (const model of ['gpt-realtime-mini', 'gpt-realtime']) {
    const res = await mint(closed, key, '/v1/realtime/client_secrets', { session: { type: 'realtime', model } }, tag);
    t.is(res.status, 403, res.body);
    t.is(errorOf(res)?.code, 'policy_blocked');
    t.like(rowById(closed.dbPath, logIdOf(res)), { operation: 'realtime.client_secrets', allowed: 0 });
  }
  t.deepEqual(upstream.tagged(tag), [], 'a client secret was minted past the gateway');
});

test('creating a realtime session (which mints a client secret too) is refused with 403 by default', async (t) => {
  const { key } = closed.createKey('voice');
  const tag = newTag();
  const res = await mint(closed, key, '/v1/realtime/sessions', { model: 'gpt-realtime-mini' }, tag);
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), []);
});

test('with ephemeral_credentials a forbidden session.model is refused with 403 and recorded as that model', async (t) => {
  const { key } = open.createKey('voice');
  const tag = newTag();
  const res = await mint(open, key, '/v1/realtime/client_secrets', { session: { type: 'realtime', model: 'gpt-realtime' } }, tag);
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), []);
  t.like(rowById(open.dbPath, logIdOf(res)), { model: 'gpt-realtime', operation: 'realtime.client_secrets', allowed: 0 });
});

test('with ephemeral_credentials a client secret without session.model is refused with 400', async (t) => {
  const { key } = open.createKey('voice');
  const tag = newTag();
  const res = await mint(open, key, '/v1/realtime/client_secrets', { session: { type: 'realtime' } }, tag);
  t.is(res.status, 400, res.body);
  t.is(errorOf(res)?.code, 'invalid_request');
  t.deepEqual(upstream.tagged(tag), []);
});

test('with ephemeral_credentials an allowed session.model is forwarded and recorded as that model', async (t) => {
  const { key } = open.createKey('voice');
  const tag = newTag();
  const res = await mint(open, key, '/v1/realtime/client_secrets', { session: { type: 'realtime', model: 'gpt-realtime-mini' } }, tag);
  t.is(res.status, 200, res.body);
  t.is(upstream.tagged(tag).length, 1);
  t.like(rowById(open.dbPath, logIdOf(res)), { model: 'gpt-realtime-mini', operation: 'realtime.client_secrets', allowed: 1 });
});
