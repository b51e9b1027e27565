import test, { type ExecutionContext } from 'ava';
import OpenAI, { toFile } from 'openai';
import { newTag, startMockUpstream, type MockUpstream, type ReceivedRequest, type Tag } from '../helpers/mock-upstream.js';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { policy } from '../helpers/policy-builder.js';
import { decisionRow, errorBody, logIdOf } from './support.js';

// acme is limited to two models so that the model the policy reads can be observed through a block.
const POLICY = policy()
  .catchAll()
  .customer('acme', { models: ['gpt-4o-mini', 'whisper-1'] })
  .rule({ id: 'flagged-team', when: { 'metadata.team': 'risky' }, risk: 30 })
  .yaml();

let upstream: MockUpstream;
let gw: Harness;
let acmeKey: string;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY });
  acmeKey = gw.createKey('acme').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

function post(path: string, body: Buffer | string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${acmeKey}`, ...headers }, body });
}

/** The one request the provider received with `tag`; it fails the test when there is not exactly one. */
function forwardedOnce(t: ExecutionContext, tag: Tag): ReceivedRequest {
  const seen = upstream.tagged(tag);
  t.is(seen.length, 1, 'requests the provider received');
  if (seen.length === 0) throw new Error('the request never reached the provider');
  return seen[0]!;
}

test('the body reaches the provider byte for byte', async (t) => {
  // Whitespace, key order, a number written as 1.0, escapes and raw non-ASCII: any re-serialisation changes these bytes.
  const text =
    '{ "messages" :[ {"content":"h\\u00e9llo ☃ 😀 \\"quoted\\"\\n","role":"user"} ],\n\t"temperature": 1.0,' +
    '   "model":"gpt-4o-mini" ,"top_p":1e0 }  \n';
  const bytes = Buffer.from(text, 'utf8');
  const tag = newTag();
  const res = await post('/v1/chat/completions', bytes, { 'content-type': 'application/json', ...tag });
  t.is(res.status, 200);
  await res.arrayBuffer();
  const seen = forwardedOnce(t, tag);
  t.true(seen.body.equals(bytes), `provider received ${JSON.stringify(seen.body.toString('utf8'))}`);
});

test("the client's credentials, cookies, governance and provider-scoping headers are dropped; the provider key is set", async (t) => {
  const tag = newTag();
  const res = await post('/v1/chat/completions?api-version=2024-10-21&tag=a%20b&tag=c', JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), {
    'content-type': 'application/json',
    'api-key': acmeKey,
    cookie: 'session=s3cr3t; other=1',
    'x-governance-metadata': JSON.stringify({ team: 'core' }),
    'x-governance-trace': 'internal-only',
    'openai-organization': 'org-test123',
    'openai-project': 'proj_abc',
    'x-custom': 'kept',
    ...tag,
  });
  t.is(res.status, 200);
  await res.arrayBuffer();
  const seen = forwardedOnce(t, tag);
  t.is(seen.headers.authorization, `Bearer ${UPSTREAM_SECRET}`);
  t.is(seen.headers['api-key'], undefined);
  t.is(seen.headers.cookie, undefined);
  t.deepEqual(Object.keys(seen.headers).filter((h) => h.startsWith('x-governance-')), []);
  t.false(JSON.stringify(seen.headers).includes(acmeKey), 'the client key reached the provider');
  t.is(seen.headers['openai-organization'], undefined);
  t.is(seen.headers['openai-project'], undefined);
  t.is(seen.headers['x-custom'], 'kept');
  t.is(seen.path, '/v1/chat/completions?api-version=2024-10-21&tag=a%20b&tag=c');
});

test('every response carries x-request-id, including health and unknown routes', async (t) => {
  const health = await fetch(`${gw.url}/healthz`);
  t.is(health.status, 200);
  t.truthy(health.headers.get('x-request-id'));

  const unknown = await fetch(`${gw.url}/no-such-route`);
  t.is(unknown.status, 404);
  t.truthy(unknown.headers.get('x-request-id'));

  const unauthenticated = await fetch(`${gw.baseURL}/models`);
  t.is(unauthenticated.status, 401);
  t.truthy(unauthenticated.headers.get('x-request-id'));

  // Two requests never share an id the gateway made up.
  t.not(health.headers.get('x-request-id'), unknown.headers.get('x-request-id'));
});

test('a proxied response carries the governance decision, risk score and log id', async (t) => {
  const res = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), {
    'content-type': 'application/json',
    'x-governance-metadata': JSON.stringify({ team: 'risky' }),
  });
  t.is(res.status, 200);
  await res.arrayBuffer();
  t.truthy(res.headers.get('x-request-id'));
  t.is(res.headers.get('x-governance-decision'), 'allow');
  t.is(Number(res.headers.get('x-governance-risk-score')), 30);
  const row = decisionRow(gw.dbPath, logIdOf(res.headers));
  t.like(row, { customer_id: 'acme', allowed: 1, risk_score: 30 });
});

test('a blocked response carries the governance headers too', async (t) => {
  const res = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [] }), { 'content-type': 'application/json' });
  t.is(res.status, 403);
  t.is(res.headers.get('x-governance-decision'), 'block');
  t.truthy(res.headers.get('x-governance-risk-score'));
  t.like(decisionRow(gw.dbPath, logIdOf(res.headers)), { allowed: 0, model: 'gpt-4o' });
});

test("a client's sane x-request-id is kept", async (t) => {
  const res = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), {
    'content-type': 'application/json',
    'x-request-id': 'trace-2024.abc:42',
  });
  t.is(res.status, 200);
  await res.arrayBuffer();
  t.is(res.headers.get('x-request-id'), 'trace-2024.abc:42');

  const health = await fetch(`${gw.url}/healthz`, { headers: { 'x-request-id': 'health-probe-7' } });
  t.is(health.headers.get('x-request-id'), 'health-probe-7');
});

test('a JSON body labelled text/plain is still checked by the policy', async (t) => {
  const tag = newTag();
  const blocked = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [] }), { 'content-type': 'text/plain', ...tag });
  t.is(blocked.status, 403);
  t.is((await errorBody(blocked)).error.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), [], 'the mislabelled request reached the provider');
  t.like(decisionRow(gw.dbPath, logIdOf(blocked.headers)), { model: 'gpt-4o', allowed: 0 });

  // The same label with an allowed model goes through, so the block above is about the model, not the label.
  const allowed = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), { 'content-type': 'text/plain', ...tag });
  t.is(allowed.status, 200);
  await allowed.arrayBuffer();
  t.is(upstream.tagged(tag).length, 1);
});

/** Audio bytes that are not valid UTF-8, so a text round-trip anywhere would corrupt them. */
const AUDIO = Buffer.from([0x52, 0x49, 0x46, 0x46, 0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x0d, 0x0a, 0x2d, 0x2d, 0x01]);

function multipartBody(boundary: string, model: string): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n`),
    AUDIO,
    Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${model}`),
    Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n--${boundary}--\r\n`),
  ]);
}

test('a multipart upload with an allowed model is forwarded as the same parts, the file bytes unchanged, in canonical form', async (t) => {
  const boundary = '----govgateBoundary7MA4YWxk';
  const body = multipartBody(boundary, 'whisper-1');
  const tag = newTag();
  const res = await post('/v1/audio/transcriptions', body, { 'content-type': `multipart/form-data; boundary=${boundary}`, ...tag });
  t.is(res.status, 200);
  await res.arrayBuffer();
  const seen = forwardedOnce(t, tag);
  t.is(seen.path, '/v1/audio/transcriptions');
  const contentType = String(seen.headers['content-type']);
  t.regex(contentType, /^multipart\/form-data; boundary=govgate-[0-9a-f]{32}$/);
  const form = await new Response(seen.body, { headers: { 'content-type': contentType } }).formData();
  t.deepEqual([...form.keys()], ['file', 'model', 'language']);
  t.is(form.get('model'), 'whisper-1');
  t.is(form.get('language'), 'en');
  const file = form.get('file') as File;
  t.is(file.name, 'clip.wav');
  t.is(file.type, 'audio/wav');
  t.true(Buffer.from(await file.arrayBuffer()).equals(AUDIO), 'the file bytes were altered on the way');
  t.like(decisionRow(gw.dbPath, logIdOf(res.headers)), { model: 'whisper-1', operation: 'audio.transcriptions', allowed: 1 });
});

test('a multipart upload is checked against the model in its form field', async (t) => {
  const tag = newTag();
  const boundary = 'xYzZY';
  const res = await post('/v1/audio/transcriptions', multipartBody(boundary, 'gpt-4o-transcribe'), {
    'content-type': `multipart/form-data; boundary=${boundary}`,
    ...tag,
  });
  t.is(res.status, 403);
  t.is((await errorBody(res)).error.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), []);
  t.like(decisionRow(gw.dbPath, logIdOf(res.headers)), { model: 'gpt-4o-transcribe', allowed: 0 });
});

test("the SDK's own multipart upload is checked the same way", async (t) => {
  const client = gw.sdk(acmeKey);
  const tag = newTag();
  const file = await toFile(Buffer.from('RIFF....WAVEfmt '), 'clip.wav', { type: 'audio/wav' });
  const err = await t.throwsAsync(client.audio.transcriptions.create({ file, model: 'gpt-4o-transcribe' }, { headers: tag }), {
    instanceOf: OpenAI.PermissionDeniedError,
  });
  t.is(err?.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), []);

  const ok = await client.audio.transcriptions.create({ file: await toFile(Buffer.from('RIFF'), 'a.wav'), model: 'whisper-1' }, { headers: tag });
  t.truthy(ok);
  t.regex(String(forwardedOnce(t, tag).headers['content-type']), /^multipart\/form-data; boundary=/);
});
