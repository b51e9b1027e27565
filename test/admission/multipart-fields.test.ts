import test from 'ava';
import busboy from 'busboy';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream, type ReceivedRequest } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, multipart, rowById, send } from './support.js';

// Issue 14, finding 2: the hand-written multipart scan only saw `name="model"`; a provider also reads
// `name=model`, `NAME="model"` and `name = "model"`, and field names case-insensitively. Whatever a
// provider could read as the model field is either read and judged by the gateway, or refused.

const POLICY = policy().catchAll().customer('acme', { models: ['whisper-1'] }).yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

const BOUNDARY = 'govgateAdmissionBoundary42';
const AUDIO = Buffer.from([0x52, 0x49, 0x46, 0x46, 0xff, 0xfe, 0x00, 0x80, 0x0d, 0x0a, 0x2d, 0x2d]);

function upload(modelDisposition: string, model: string, extra: { disposition: string; body: string }[] = []): Buffer {
  return multipart(BOUNDARY, [
    { disposition: 'form-data; name="file"; filename="clip.wav"', headers: ['Content-Type: audio/wav'], body: AUDIO },
    { disposition: modelDisposition, body: model },
    ...extra,
  ]);
}

async function transcribe(body: Buffer): Promise<{ status: number; code: string | undefined; forwarded: ReceivedRequest[]; logId: string; body: string }> {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/audio/transcriptions',
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, ...tag },
    body,
  });
  return { status: res.status, code: errorOf(res)?.code, forwarded: upstream.tagged(tag), logId: logIdOf(res), body: res.body };
}

test('a model field named with an unquoted name=model is read and judged (403 for a forbidden model)', async (t) => {
  const r = await transcribe(upload('form-data; name=model', 'gpt-4o-transcribe'));
  t.is(r.status, 403, r.body);
  t.is(r.code, 'policy_blocked');
  t.deepEqual(r.forwarded, []);
  t.like(rowById(gw.dbPath, r.logId), { model: 'gpt-4o-transcribe', operation: 'audio.transcriptions', allowed: 0 });
});

test('a model field named with an upper-case NAME="model" parameter is read and judged (403 for a forbidden model)', async (t) => {
  const r = await transcribe(upload('form-data; NAME="model"', 'gpt-4o-transcribe'));
  t.is(r.status, 403, r.body);
  t.is(r.code, 'policy_blocked');
  t.deepEqual(r.forwarded, []);
  t.like(rowById(gw.dbPath, r.logId), { model: 'gpt-4o-transcribe', allowed: 0 });
});

test('a model field written name = "model" (spaces around =) is refused and never forwarded', async (t) => {
  // busboy does not take this part as a named field; a provider may. Either way it may not pass unjudged.
  const r = await transcribe(upload('form-data; name = "model"', 'gpt-4o-transcribe'));
  t.is(r.status, 400, r.body);
  t.is(r.code, 'invalid_request');
  t.deepEqual(r.forwarded, []);
  t.like(rowById(gw.dbPath, r.logId), { allowed: 0 });
});

test('two model fields differing only in case (model and Model) are refused with 400', async (t) => {
  // The first is allowed; a provider reading field names case-insensitively, last wins, serves the second.
  const r = await transcribe(upload('form-data; name="model"', 'whisper-1', [{ disposition: 'form-data; name="Model"', body: 'gpt-4o-transcribe' }]));
  t.is(r.status, 400, r.body);
  t.is(r.code, 'invalid_request');
  t.deepEqual(r.forwarded, []);
  t.like(rowById(gw.dbPath, r.logId), { allowed: 0 });
});

test('an allowed model under an unusual field spelling is forwarded with the provider reading exactly that model', async (t) => {
  const r = await transcribe(upload('form-data; NAME=model', 'whisper-1'));
  t.is(r.status, 200, r.body);
  t.is(r.forwarded.length, 1);
  t.like(rowById(gw.dbPath, r.logId), { model: 'whisper-1', allowed: 1 });
  // Whatever the gateway sends, a strict multipart parser finds one model field and it is the judged one.
  const [seen] = r.forwarded;
  if (!seen) return;
  const fields = await parseForm(String(seen.headers['content-type']), seen.body);
  t.deepEqual(fields.filter(([name]) => name.toLowerCase() === 'model'), [['model', 'whisper-1']]);
  t.true(seen.body.includes(AUDIO), 'the audio bytes arrived unchanged');
});

function parseForm(contentType: string, body: Buffer): Promise<[string, string][]> {
  return new Promise((resolve, reject) => {
    const out: [string, string][] = [];
    const bb = busboy({ headers: { 'content-type': contentType } });
    bb.on('field', (name: string, value: string) => out.push([name, value]));
    bb.on('file', (_name: string, stream: NodeJS.ReadableStream) => stream.resume());
    bb.on('error', reject);
    bb.on('close', () => resolve(out));
    bb.end(body);
  });
}
