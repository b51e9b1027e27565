import test, { type ExecutionContext } from 'ava';
import { startMockUpstream, type MockUpstream, type ReceivedRequest } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { policy } from '../helpers/policy-builder.js';
import { rawRequest, type OpenAIErrorShape, type RawResponse } from './support.js';

/*
 * A provider may read a request differently from the gateway: decode a path,
 * take the other of two model fields, skip a byte order mark. Whatever it
 * could serve otherwise than the policy judged is refused, never forwarded;
 * each refusal has a control that the same request, unambiguous, goes through.
 */

/** acme may use one model, with a token cap; everyone else ("open") may use anything. */
const POLICY = policy().catchAll().customer('acme', { models: ['gpt-4o-mini'], operations: ['*'], max_tokens: 2048 }).yaml();

const ALLOWED = 'gpt-4o-mini';
const DISALLOWED = 'gpt-4o';

let upstream: MockUpstream;
let gw: Harness;
let acme: string;
let open: string;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY });
  acme = gw.createKey('acme').key;
  open = gw.createKey('open').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

function send(key: string, path: string, body: string | Buffer, contentType = 'application/json', method = 'POST'): Promise<RawResponse> {
  return rawRequest(gw.url, { method, path, headers: { authorization: `Bearer ${key}`, 'content-type': contentType }, body });
}

function errorOf(res: RawResponse): OpenAIErrorShape['error'] {
  return (JSON.parse(res.body) as OpenAIErrorShape).error;
}

/**
 * What the provider received of the request `res` answers: the gateway sends
 * its request id both ways, so tests running beside this one do not count.
 */
function forwarded(res: RawResponse): ReceivedRequest[] {
  const id = res.headers['x-request-id'];
  if (typeof id !== 'string') throw new Error('an answer without x-request-id');
  return upstream.received.filter((r) => r.headers['x-request-id'] === id);
}

/** Runs `act` and asserts the provider received nothing of the request. */
async function notForwarded(t: ExecutionContext, act: () => Promise<RawResponse>): Promise<RawResponse> {
  const result = await act();
  t.deepEqual(forwarded(result).map((r) => `${r.method} ${r.path}`), [], 'forwarded');
  return result;
}

function assertRefused(t: ExecutionContext, res: RawResponse, status: number, code: string, param?: string): void {
  t.is(res.status, status, res.body);
  if (res.status !== status) return;
  const error = errorOf(res);
  t.is(error.code, code);
  if (param !== undefined) t.is(error.param, param);
}

// ---------------------------------------------------------------- paths

const CHAT = JSON.stringify({ model: ALLOWED, messages: [{ role: 'user', content: 'hi' }] });

test('the plain chat path is forwarded (control for the path variants below)', async (t) => {
  const res = await send(acme, '/v1/chat/completions', CHAT);
  t.is(res.status, 200, res.body);
  t.is(forwarded(res).length, 1);
});

for (const path of ['/v1/chat/%63ompletions', '/v1/chat/completions;x=1', '/v1/chat//completions']) {
  test(`POST ${path} gets 404 route_not_found and is not forwarded`, async (t) => {
    // A provider may decode or normalise these into a route other than the one the policy judged.
    const res = await notForwarded(t, () => send(acme, path, CHAT));
    assertRefused(t, res, 404, 'route_not_found');
  });
}

test('a fine-tuned model id with colons in the path is still forwarded', async (t) => {
  const path = '/v1/models/ft:gpt-4o-mini:org::abc';
  const res = await rawRequest(gw.url, { method: 'GET', path, headers: { authorization: `Bearer ${acme}` } });
  t.is(res.status, 200, res.body);
  t.deepEqual(forwarded(res).map((r) => r.path), [path]);
});

// ---------------------------------------------------------------- token caps

test('max_tokens under the cap is forwarded (control for the cap checks below)', async (t) => {
  const res = await send(acme, '/v1/chat/completions', JSON.stringify({ model: ALLOWED, messages: [], max_tokens: 100 }));
  t.is(res.status, 200, res.body);
});

test('max_tokens as a string is refused with 400 invalid_request naming max_tokens', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', JSON.stringify({ model: ALLOWED, messages: [], max_tokens: '100000' })));
  assertRefused(t, res, 400, 'invalid_request', 'max_tokens');
});

test('a small max_tokens beside a large max_completion_tokens is held to the larger: 403', async (t) => {
  const body = JSON.stringify({ model: ALLOWED, messages: [], max_tokens: 1, max_completion_tokens: 100000 });
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', body));
  assertRefused(t, res, 403, 'policy_blocked');
});

test('max_output_tokens over the cap is blocked with 403', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/responses', JSON.stringify({ model: ALLOWED, input: 'hi', max_output_tokens: 5000 })));
  assertRefused(t, res, 403, 'policy_blocked');
});

// ---------------------------------------------------------------- request bodies

const BOUNDARY = 'govgate-test-boundary';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** A transcription upload: the given form fields, then a small file part. */
function multipart(fields: [string, string][]): Buffer {
  const parts = fields.map(([name, value]) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
  parts.push(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF0000WAVE\r\n`);
  return Buffer.from(`${parts.join('')}--${BOUNDARY}--\r\n`);
}

test('a multipart upload with one allowed model is forwarded, one disallowed model is blocked (controls)', async (t) => {
  const allowed = await send(acme, '/v1/audio/transcriptions', multipart([['model', ALLOWED]]), MULTIPART);
  t.is(allowed.status, 200, allowed.body);
  const blocked = await notForwarded(t, () => send(acme, '/v1/audio/transcriptions', multipart([['model', DISALLOWED]]), MULTIPART));
  assertRefused(t, blocked, 403, 'policy_blocked');
});

test('multipart fields named MODEL and model are two model fields, refused with 400', async (t) => {
  // Providers read field names case-insensitively, so either may be the one they serve.
  const body = multipart([['MODEL', ALLOWED], ['model', DISALLOWED]]);
  const res = await notForwarded(t, () => send(acme, '/v1/audio/transcriptions', body, MULTIPART));
  assertRefused(t, res, 400, 'invalid_request', 'model');
});

test('a multipart body with two model fields is refused with 400', async (t) => {
  // Providers differ on which of the two wins, so the policy cannot know which one it judged.
  const body = multipart([['model', ALLOWED], ['model', DISALLOWED]]);
  const res = await notForwarded(t, () => send(acme, '/v1/audio/transcriptions', body, MULTIPART));
  assertRefused(t, res, 400, 'invalid_request');
});

test('a JSON body labelled multipart without its boundary in the body is refused with 400', async (t) => {
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', JSON.stringify({ model: DISALLOWED }), 'multipart/form-data; boundary=zz'));
  assertRefused(t, res, 400, 'invalid_request');
});

test('a JSON body with a UTF-8 BOM sent as text/plain is refused with 400: parsers differ on skipping it', async (t) => {
  const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ model: DISALLOWED, messages: [] }))]);
  const res = await notForwarded(t, () => send(acme, '/v1/chat/completions', body, 'text/plain'));
  assertRefused(t, res, 400, 'invalid_request');
});

test('a model name over 256 characters is refused with 400, in JSON and in multipart', async (t) => {
  const long = `gpt-${'x'.repeat(300)}`;
  // "open" may use any model, so only the length can refuse it.
  const json = await notForwarded(t, () => send(open, '/v1/chat/completions', JSON.stringify({ model: long, messages: [] })));
  assertRefused(t, json, 400, 'invalid_request', 'model');
  const form = await notForwarded(t, () => send(open, '/v1/audio/transcriptions', multipart([['model', long]]), MULTIPART));
  assertRefused(t, form, 400, 'invalid_request', 'model');
});
