import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, send } from './support.js';

// Issue 14, finding 1: bodies the gateway could not read as strict JSON were forwarded with model NULL
// (and allowed), while a lenient provider parses them anyway and serves the model inside. Whatever the
// Content-Type says, a non-multipart body must be a single strict JSON object, else 400, never forwarded.

const POLICY = policy().catchAll().customer('acme', { models: ['gpt-4o-mini'] }).yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

/** Sends a body as acme (allowed gpt-4o-mini only) and asserts it is refused with 400 and not forwarded. */
async function refusedAs400(
  t: import('ava').ExecutionContext,
  body: Buffer | string,
  headers: Record<string, string>,
  path = '/v1/chat/completions',
): Promise<void> {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await send(gw.url, key, { path, headers: { ...headers, ...tag }, body });
  t.is(res.status, 400, res.body);
  t.is(errorOf(res)?.code, 'invalid_request');
  t.deepEqual(upstream.tagged(tag).map((r) => r.body.toString('latin1')), [], 'the provider received it');
  const row = rowById(gw.dbPath, logIdOf(res));
  t.like(row, { customer_id: 'acme', allowed: 0 });
}

const LENIENT_JSON: [string, string][] = [
  ['NaN', '{"model":"gpt-4o","messages":[],"temperature":NaN}'],
  ['a trailing comma', '{"model":"gpt-4o","messages":[],}'],
  ['trailing data', '{"model":"gpt-4o","messages":[]} {"model":"gpt-4o-mini"}'],
  ['trailing garbage', '{"model":"gpt-4o","messages":[]}garbage'],
];

for (const [what, body] of LENIENT_JSON) {
  test(`a text/plain body with ${what} is refused with 400 and never forwarded`, async (t) => {
    await refusedAs400(t, body, { 'content-type': 'text/plain' });
  });
  test(`a body with ${what} and no content type is refused with 400 and never forwarded`, async (t) => {
    await refusedAs400(t, body, {});
  });
}

function withBom(bom: number[], text: string, encode: (s: string) => Buffer): Buffer {
  return Buffer.concat([Buffer.from(bom), encode(text)]);
}

function utf16be(s: string): Buffer {
  const le = Buffer.from(s, 'utf16le');
  for (let i = 0; i < le.length; i += 2) [le[i], le[i + 1]] = [le[i + 1]!, le[i]!];
  return le;
}

function utf32(s: string, littleEndian: boolean): Buffer {
  const out = Buffer.alloc(s.length * 4);
  for (let i = 0; i < s.length; i++) {
    if (littleEndian) out.writeUInt32LE(s.charCodeAt(i), i * 4);
    else out.writeUInt32BE(s.charCodeAt(i), i * 4);
  }
  return out;
}

const FORBIDDEN = '{"model":"gpt-4o","messages":[]}';
const UNICODE_BODIES: [string, Buffer][] = [
  ['UTF-16LE with BOM', withBom([0xff, 0xfe], FORBIDDEN, (s) => Buffer.from(s, 'utf16le'))],
  ['UTF-16BE with BOM', withBom([0xfe, 0xff], FORBIDDEN, utf16be)],
  ['UTF-32LE with BOM', withBom([0xff, 0xfe, 0x00, 0x00], FORBIDDEN, (s) => utf32(s, true))],
  ['UTF-32BE with BOM', withBom([0x00, 0x00, 0xfe, 0xff], FORBIDDEN, (s) => utf32(s, false))],
];

for (const [what, body] of UNICODE_BODIES) {
  test(`a ${what} body is refused with 400 and never forwarded`, async (t) => {
    await refusedAs400(t, body, {});
  });
  test(`a ${what} body labelled application/json is refused with 400 and never forwarded`, async (t) => {
    await refusedAs400(t, body, { 'content-type': 'application/json' });
  });
}

test('a UTF-8 body with a byte order mark is refused with 400, even naming an allowed model', async (t) => {
  const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"model":"gpt-4o-mini","messages":[]}')]);
  await refusedAs400(t, body, { 'content-type': 'application/json' });
});

test('a form-urlencoded body is refused with 400 and never forwarded', async (t) => {
  await refusedAs400(t, 'model=gpt-4o&messages=%5B%5D', { 'content-type': 'application/x-www-form-urlencoded' });
});

test('an ndjson body is refused with 400 and never forwarded', async (t) => {
  await refusedAs400(t, `${FORBIDDEN}\n{"model":"gpt-4o-mini","messages":[]}\n`, { 'content-type': 'application/x-ndjson' });
});

test('a JSON body sent with a multipart content type whose boundary appears in its text is refused with 400', async (t) => {
  const boundary = 'zzBOUNDARYzz';
  const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: `--${boundary}\r\nContent-Disposition: form-data; name="x"` }] });
  await refusedAs400(t, body, { 'content-type': `multipart/form-data; boundary=${boundary}` });
});

test('a ?model= of an allowed model does not stand in for a forbidden model in an unreadable body', async (t) => {
  // Before: the row said model gpt-4o-mini, allowed, and the provider served gpt-4o from the lenient body.
  await refusedAs400(t, '{"model":"gpt-4o","messages":[],}', { 'content-type': 'text/plain' }, '/v1/chat/completions?model=gpt-4o-mini');
});

test('a ?model= query parameter on a route whose model is in the body is refused with 400', async (t) => {
  await refusedAs400(t, FORBIDDEN, { 'content-type': 'application/json' }, '/v1/chat/completions?model=gpt-4o-mini');
});

test('a strict JSON body labelled text/plain or without content type is still judged and served', async (t) => {
  // The same labels with a strict body: refused by the policy when forbidden, forwarded when allowed.
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const blocked = await send(gw.url, key, { path: '/v1/chat/completions', headers: { 'content-type': 'text/plain', ...tag }, body: FORBIDDEN });
  t.is(blocked.status, 403, blocked.body);
  t.is(errorOf(blocked)?.code, 'policy_blocked');
  t.like(rowById(gw.dbPath, logIdOf(blocked)), { model: 'gpt-4o', allowed: 0 });
  const allowed = await send(gw.url, key, { path: '/v1/chat/completions', headers: { ...tag }, body: '{"model":"gpt-4o-mini","messages":[]}' });
  t.is(allowed.status, 200, allowed.body);
  t.is(upstream.tagged(tag).length, 1);
});
