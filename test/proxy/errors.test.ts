import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { newTag, startMockUpstream, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { closedPortUrl, errorBody, logIdOf, outcomeRow, rawRequest, waitFor, type OpenAIErrorShape, type RawResponse } from './support.js';

const MAX_BODY = 1024;

let upstream: MockUpstream;
let slow: MockUpstream;
let gw: Harness;
let key: string;

test.before(async () => {
  upstream = await startMockUpstream();
  slow = await startMockUpstream();
  slow.setDelay(2000);
  const deadUrl = await closedPortUrl();
  gw = await startHarness(upstream.url, {
    maxBodyBytes: MAX_BODY,
    providers: [
      { name: 'dead', base_url: deadUrl, models: ['dead-*'], api_key_env: 'OPENAI_API_KEY' },
      { name: 'slow', base_url: slow.url, models: ['slow-*'], api_key_env: 'OPENAI_API_KEY', first_byte_timeout_ms: 300 },
      { name: 'openai', base_url: upstream.url, models: ['*'], api_key_env: 'OPENAI_API_KEY' },
    ],
  });
  key = gw.createKey('errors').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
  await slow?.close();
});

function chat(body: string | Buffer, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body,
  });
}

function assertNotForwarded(t: ExecutionContext, tag: Tag): void {
  t.deepEqual(upstream.tagged(tag).map((r) => `${r.method} ${r.path}`), [], 'forwarded');
}

test('a malformed JSON body gets 400 invalid_request without quoting the body', async (t) => {
  const tag = newTag();
  const canary = 'CANARY-malformed-7f3a9';
  const res = await chat(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${canary}"}`, tag);
  t.is(res.status, 400);
  const body = await errorBody(res);
  t.is(body.error.code, 'invalid_request');
  t.false(body.error.message.includes(canary), 'the error message quotes the request body');
  t.false(body.error.message.includes('"messages"'), 'the error message quotes the request body');
  assertNotForwarded(t, tag);
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The gateway's own refusals say what they are, like a policy block does. */
function assertRefusalHeaders(t: ExecutionContext, headers: { get(name: string): string | null }): void {
  t.is(headers.get('x-governance-decision'), 'block');
  t.is(headers.get('x-governance-risk-score'), '0');
  t.regex(String(headers.get('x-governance-log-id')), UUID);
}

test('a 400 for malformed JSON carries the block decision and risk score 0', async (t) => {
  const tag = newTag();
  const res = await chat('{"model":"gpt-4o-mini",', tag);
  t.is(res.status, 400);
  t.is((await errorBody(res)).error.code, 'invalid_request');
  assertRefusalHeaders(t, res.headers);
  assertNotForwarded(t, tag);
});

test('a 413 for a body over max_body_bytes carries the block decision and risk score 0', async (t) => {
  const tag = newTag();
  const res = await chat(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'y'.repeat(MAX_BODY * 2) }] }), tag);
  t.is(res.status, 413);
  t.is((await errorBody(res)).error.code, 'request_too_large');
  assertRefusalHeaders(t, res.headers);
  assertNotForwarded(t, tag);
});

test('GET /v1/check gets 405 method_not_allowed and is not forwarded', async (t) => {
  const tag = newTag();
  const res: RawResponse = await rawRequest(gw.url, { method: 'GET', path: '/v1/check', headers: { authorization: `Bearer ${key}`, ...tag } });
  t.is(res.status, 405, res.body);
  t.is((JSON.parse(res.body) as OpenAIErrorShape).error.code, 'method_not_allowed');
  assertNotForwarded(t, tag);
});

const BAD_METADATA: [string, string][] = [
  ['not JSON', '{contains_pii: true'],
  ['a nested object', JSON.stringify({ owner: { team: 'core' } })],
  ['an array value', JSON.stringify({ tags: ['a', 'b'] })],
  ['a JSON array', JSON.stringify(['contains_pii'])],
  ['over 4 KiB', JSON.stringify({ note: 'x'.repeat(4200) })],
];

for (const [what, header] of BAD_METADATA) {
  test(`X-Governance-Metadata that is ${what} gets 400 invalid_request`, async (t) => {
    const tag = newTag();
    const res = await chat(JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), { 'x-governance-metadata': header, ...tag });
    t.is(res.status, 400);
    t.is((await errorBody(res)).error.code, 'invalid_request');
    assertNotForwarded(t, tag);
  });
}

test('metadata just under 4 KiB is accepted', async (t) => {
  // The limit must not be so tight that the contract's 4 KiB cannot be used.
  const header = JSON.stringify({ note: 'x'.repeat(4000) });
  t.true(Buffer.byteLength(header) <= 4096);
  const res = await chat(JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), { 'x-governance-metadata': header });
  t.is(res.status, 200);
  await res.arrayBuffer();
});

test('a body over max_body_bytes gets 413 request_too_large and nothing is forwarded', async (t) => {
  const tag = newTag();
  const big = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'y'.repeat(MAX_BODY * 2) }] });
  const res = await chat(big, tag);
  t.is(res.status, 413);
  t.is((await errorBody(res)).error.code, 'request_too_large');
  assertNotForwarded(t, tag);
});

test('a chunked body that grows over max_body_bytes gets 413 too', async (t) => {
  const tag = newTag();
  // No content-length: the limit must be enforced on the bytes as they arrive.
  const parts = [Buffer.from('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'), Buffer.alloc(MAX_BODY * 2, 'z'), Buffer.from('"}]}')];
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...tag },
    body: Readable.toWeb(Readable.from(parts)) as ReadableStream<Uint8Array>,
    duplex: 'half',
  } as RequestInit & { duplex: 'half' });
  t.is(res.status, 413);
  t.is((await errorBody(res)).error.code, 'request_too_large');
  assertNotForwarded(t, tag);
});

test('a body right at max_body_bytes is forwarded', async (t) => {
  const head = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"';
  const tail = '"}]}';
  const body = head + 'k'.repeat(MAX_BODY - head.length - tail.length) + tail;
  t.is(Buffer.byteLength(body), MAX_BODY);
  const res = await chat(body);
  t.is(res.status, 200);
  await res.arrayBuffer();
});

test('an unreachable provider gets 502 upstream_unavailable', async (t) => {
  const res = await chat(JSON.stringify({ model: 'dead-model', messages: [] }));
  t.is(res.status, 502);
  t.is((await errorBody(res)).error.code, 'upstream_unavailable');
  const logId = logIdOf(res.headers);
  const outcome = await waitFor(() => outcomeRow(gw.dbPath, logId), 2000);
  t.is(outcome?.status, 502);
  t.truthy(outcome?.error, 'the failure is recorded in the outcome row');
});

test('a provider that does not start answering in time gets 504 upstream_timeout', async (t) => {
  const res = await chat(JSON.stringify({ model: 'slow-model', messages: [] }));
  t.is(res.status, 504);
  t.is((await errorBody(res)).error.code, 'upstream_timeout');
  t.is(slow.received.length, 1, 'the request did reach the slow provider');
  const logId = logIdOf(res.headers);
  const outcome = await waitFor(() => outcomeRow(gw.dbPath, logId), 2000);
  t.is(outcome?.error, 'upstream_timeout');
});

test('routes outside the API surface get 404', async (t) => {
  for (const path of ['/admin', '/v2/chat/completions', '/', '/v1']) {
    const res = await rawRequest(gw.url, { path, headers: { authorization: `Bearer ${key}` } });
    t.is(res.status, 404, path);
    t.truthy(res.headers['x-request-id'], path);
  }
});

const TRAVERSALS = ['/v1/../secret', '/v1/chat/../../secret', '/v1/%2e%2e/x', '/v1/%2E%2E/%2e%2e/admin', '/v1/chat/..%2f..%2fsecret'];

test('path traversal attempts get 404 and are not forwarded', async (t) => {
  const tag = newTag();
  for (const path of TRAVERSALS) {
    const res = await rawRequest(gw.url, {
      method: 'POST',
      path,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...tag },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
    });
    t.is(res.status, 404, path);
  }
  assertNotForwarded(t, tag);
});
