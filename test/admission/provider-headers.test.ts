import test from 'ava';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { newTag, startMockUpstream, type MockUpstream, type ReceivedRequest, type Tag } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { describeAttempt, send, wsConnect } from './support.js';

// Issue 14, finding 8: OpenAI-Organization, OpenAI-Project, x-api-key (carrying the gateway key) and
// X-Forwarded-Host reached the provider next to the provider key, letting a client pick the provider
// project that serves and bills it. They are never forwarded; a provider's own organization/project
// from gateway.yaml are sent instead.

let upstream: MockUpstream;
let plain: Harness;
let scoped: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  const open = policy().catchAll().yaml();
  plain = await startHarness(upstream.url, { policy: open });
  scoped = await startHarness(upstream.url, {
    policy: open,
    providers: [{ name: 'openai', base_url: upstream.url, models: ['*'], api_key_env: 'OPENAI_API_KEY', organization: 'org-gateway01', project: 'proj_gateway01' }],
  });
});

test.after.always(async () => {
  await plain?.close();
  await scoped?.close();
  await upstream?.close();
});

const SCOPING = ['openai-organization', 'openai-project', 'x-api-key', 'forwarded', 'x-forwarded-host', 'x-forwarded-for', 'x-forwarded-proto', 'x-real-ip'];

/** What the provider received with `tag`: exactly one request, or the test fails. */
function receivedOnce(tag: Tag): ReceivedRequest['headers'] {
  const seen = upstream.tagged(tag);
  if (seen.length !== 1) throw new Error(`the provider received ${seen.length} requests with this tag, not 1`);
  return seen[0]!.headers;
}

function clientScopingHeaders(key: string): Record<string, string> {
  return {
    'OpenAI-Organization': 'org-client-chosen',
    'OpenAI-Project': 'proj_client_chosen',
    'x-api-key': key,
    Forwarded: 'for=203.0.113.7;host=evil.example;proto=https',
    'X-Forwarded-Host': 'evil.example',
    'X-Forwarded-For': '203.0.113.7',
    'X-Forwarded-Proto': 'https',
    'X-Real-IP': '203.0.113.7',
  };
}

test('provider-scoping and forwarding headers from the client never reach the provider', async (t) => {
  const { key } = plain.createKey('headers');
  const tag = newTag();
  const res = await send(plain.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json', 'x-custom': 'kept', ...clientScopingHeaders(key), ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  const seen = receivedOnce(tag);
  for (const name of SCOPING) t.is(seen[name], undefined, `${name} reached the provider`);
  t.false(JSON.stringify(seen).includes(key), 'the gateway key reached the provider');
  t.is(seen.authorization, `Bearer ${UPSTREAM_SECRET}`);
  t.is(seen['x-custom'], 'kept', 'other headers still go through');
});

test("a provider's organization and project from gateway.yaml are sent, never the client's", async (t) => {
  const { key } = scoped.createKey('headers');
  const tag = newTag();
  const res = await send(scoped.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json', ...clientScopingHeaders(key), ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  const seen = receivedOnce(tag);
  t.is(seen['openai-organization'], 'org-gateway01');
  t.is(seen['openai-project'], 'proj_gateway01');
  t.is(seen['x-api-key'], undefined);
  t.is(seen['x-forwarded-host'], undefined);
});

test("a provider's organization and project are sent even when the client sends none", async (t) => {
  const { key } = scoped.createKey('headers');
  const tag = newTag();
  const res = await send(scoped.url, key, { method: 'GET', path: '/v1/models', headers: { ...tag } });
  t.is(res.status, 200, res.body);
  const seen = receivedOnce(tag);
  t.is(seen['openai-organization'], 'org-gateway01');
  t.is(seen['openai-project'], 'proj_gateway01');
});

test('provider-scoping headers are not relayed on the realtime WebSocket handshake either', async (t) => {
  const { key } = plain.createKey('headers');
  const tag = newTag();
  const attempt = await wsConnect(`${plain.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-4o-realtime-preview`, {
    authorization: `Bearer ${key}`,
    ...clientScopingHeaders(key),
    ...tag,
  });
  t.true('opened' in attempt, describeAttempt(attempt));
  if ('opened' in attempt) attempt.opened.terminate();
  const handshakes = upstream.taggedWebSockets(tag);
  t.is(handshakes.length, 1);
  const seen = handshakes[0]?.headers ?? {};
  for (const name of SCOPING) t.is(seen[name], undefined, `${name} reached the provider on the handshake`);
  t.false(JSON.stringify(seen).includes(key), 'the gateway key reached the provider');
});
