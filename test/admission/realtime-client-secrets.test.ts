import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { errorOf, logIdOf, policyWith, rowById, send } from './support.js';

// Issue 14, finding 5: POST /v1/realtime/client_secrets carries its model in `session.model` and was
// never model-checked; it also mints a credential with which the client reaches the provider directly,
// past the gateway. It is refused by default; a provider may opt in with `ephemeral_credentials: true`,
// and then `session.model` is judged like any model.

const POLICY = policyWith(`  voice:
    models: ["gpt-realtime-mini"]
`);

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

function mint(gw: Harness, key: string, path: string, body: unknown) {
  return send(gw.url, key, { path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

test.serial('minting a realtime client secret is refused with 403 by default, even for an allowed session.model', async (t) => {
  const { key } = closed.createKey('voice');
  const before = upstream.received.length;
  for (const model of ['gpt-realtime-mini', 'gpt-realtime']) {
    const res = await mint(closed, key, '/v1/realtime/client_secrets', { session: { type: 'realtime', model } });
    t.is(res.status, 403, res.body);
    t.is(errorOf(res)?.code, 'policy_blocked');
    t.like(rowById(closed.dbPath, logIdOf(res)), { operation: 'realtime.client_secrets', allowed: 0 });
  }
  t.is(upstream.received.length, before, 'a client secret was minted past the gateway');
});

test.serial('creating a realtime session (which mints a client secret too) is refused with 403 by default', async (t) => {
  const { key } = closed.createKey('voice');
  const before = upstream.received.length;
  const res = await mint(closed, key, '/v1/realtime/sessions', { model: 'gpt-realtime-mini' });
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.is(upstream.received.length, before);
});

test.serial('with ephemeral_credentials a forbidden session.model is refused with 403 and recorded as that model', async (t) => {
  const { key } = open.createKey('voice');
  const before = upstream.received.length;
  const res = await mint(open, key, '/v1/realtime/client_secrets', { session: { type: 'realtime', model: 'gpt-realtime' } });
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.is(upstream.received.length, before);
  t.like(rowById(open.dbPath, logIdOf(res)), { model: 'gpt-realtime', operation: 'realtime.client_secrets', allowed: 0 });
});

test.serial('with ephemeral_credentials a client secret without session.model is refused with 400', async (t) => {
  const { key } = open.createKey('voice');
  const before = upstream.received.length;
  const res = await mint(open, key, '/v1/realtime/client_secrets', { session: { type: 'realtime' } });
  t.is(res.status, 400, res.body);
  t.is(errorOf(res)?.code, 'invalid_request');
  t.is(upstream.received.length, before);
});

test.serial('with ephemeral_credentials an allowed session.model is forwarded and recorded as that model', async (t) => {
  const { key } = open.createKey('voice');
  const before = upstream.received.length;
  const res = await mint(open, key, '/v1/realtime/client_secrets', { session: { type: 'realtime', model: 'gpt-realtime-mini' } });
  t.is(res.status, 200, res.body);
  t.is(upstream.received.length, before + 1);
  t.like(rowById(open.dbPath, logIdOf(res)), { model: 'gpt-realtime-mini', operation: 'realtime.client_secrets', allowed: 1 });
});
