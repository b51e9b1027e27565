import test from 'ava';
import OpenAI, { toFile } from 'openai';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, rowsOf, send, waitFor } from './support.js';

// Issue 14, finding 11: the 413 for an oversized upload was sent with Connection: close before the
// upload was read, so the openai SDKs often hit EPIPE, reported a connection error and retried (three
// 413 rows for one call). The gateway now lets the client finish sending (bounded) so it reads the 413,
// multipart uploads have their own limit server.max_upload_bytes, and the 413 names the setting.

const MAX_BODY = 64 * 1024;
const MAX_UPLOAD = 1024 * 1024;

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, {
    policy: policy().catchAll().yaml(),
    maxBodyBytes: MAX_BODY,
    server: { max_upload_bytes: MAX_UPLOAD },
  });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

function audio(bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) buf[i] = (i * 31 + 7) & 0xff;
  buf.write('RIFF', 0, 'latin1');
  return buf;
}

test('the openai SDK uploading a too-large audio file gets a 413 APIError (request_too_large), not a connection error, and one audit row', async (t) => {
  const { key } = gw.createKey('big-upload');
  // The SDK's default retries: a connection error would be retried and leave several rows.
  const tag = newTag();
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 2, defaultHeaders: tag });
  const file = await toFile(audio(8 * 1024 * 1024), 'long.wav', { type: 'audio/wav' });
  const err = await t.throwsAsync(client.audio.transcriptions.create({ file, model: 'whisper-1' }));
  t.true(err instanceof OpenAI.APIError, `not an APIError: ${String(err)}`);
  t.false(err instanceof OpenAI.APIConnectionError, `a connection error: ${String(err)}`);
  const apiError = err as InstanceType<typeof OpenAI.APIError>;
  t.is(apiError.status, 413);
  t.is(apiError.code, 'request_too_large');
  t.regex(apiError.message, /server\.max_upload_bytes/);
  t.deepEqual(upstream.tagged(tag), [], 'the oversized upload reached the provider');
  // Rows land before the answer; a short wait catches a retry's row too.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const rows = await waitFor(() => {
    const r = rowsOf(gw.dbPath, 'big-upload');
    return r.length > 0 ? r : undefined;
  }, 3000);
  t.is(rows?.length, 1, `rows: ${JSON.stringify(rows)}`);
  t.is(rows?.[0]?.allowed, 0);
});

test('a multipart upload larger than max_body_bytes but within max_upload_bytes is forwarded', async (t) => {
  const { key } = gw.createKey('mid-upload');
  const tag = newTag();
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0, defaultHeaders: tag });
  const bytes = audio(512 * 1024);
  t.true(bytes.length > MAX_BODY && bytes.length < MAX_UPLOAD);
  await client.audio.transcriptions.create({ file: await toFile(bytes, 'clip.wav', { type: 'audio/wav' }), model: 'whisper-1' });
  const [seen, ...more] = upstream.tagged(tag);
  t.deepEqual(more, []);
  if (!seen) return t.fail('the upload never reached the provider');
  t.is(seen.path, '/v1/audio/transcriptions');
  t.true(seen.body.includes(bytes), 'the audio bytes arrived unchanged');
  t.like(rowsOf(gw.dbPath, 'mid-upload')[0], { model: 'whisper-1', operation: 'audio.transcriptions', allowed: 1 });
});

test('a JSON body over max_body_bytes is still 413, and the message names server.max_body_bytes', async (t) => {
  const { key } = gw.createKey('big-json');
  const tag = newTag();
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(MAX_BODY) }] });
  const res = await send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', ...tag }, body });
  t.is(res.status, 413, res.body);
  t.is(errorOf(res)?.code, 'request_too_large');
  t.regex(errorOf(res)?.message ?? '', /server\.max_body_bytes/);
  t.deepEqual(upstream.tagged(tag), []);
});
