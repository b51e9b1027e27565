import * as zlib from 'node:zlib';
import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, send } from './support.js';

// Issue 14, finding 1: a compressed body is unreadable to the policy (model NULL) while a lenient
// provider decodes it and serves the model inside. It must be refused with 415 and never forwarded.

const POLICY = policy().catchAll().customer('acme', { models: ['gpt-4o-mini'] }).yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

const FORBIDDEN = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });

const ENCODINGS: [string, (b: Buffer) => Buffer][] = [
  ['gzip', (b) => zlib.gzipSync(b)],
  ['deflate', (b) => zlib.deflateSync(b)],
  ['br', (b) => zlib.brotliCompressSync(b)],
];

for (const [encoding, compress] of ENCODINGS) {
  for (const contentType of ['application/json', 'text/plain', undefined]) {
    test(`a ${encoding}-encoded body (content-type ${contentType ?? 'missing'}) is refused with 415 and never forwarded`, async (t) => {
      const { key } = gw.createKey('acme');
      const tag = newTag();
      const res = await send(gw.url, key, {
        path: '/v1/chat/completions',
        headers: { 'content-encoding': encoding, ...(contentType ? { 'content-type': contentType } : {}), ...tag },
        body: compress(Buffer.from(FORBIDDEN)),
      });
      t.is(res.status, 415, res.body);
      t.is(errorOf(res)?.code, 'unsupported_content_encoding');
      t.deepEqual(upstream.tagged(tag), [], 'the compressed request reached the provider');
      t.like(rowById(gw.dbPath, logIdOf(res)), { customer_id: 'acme', allowed: 0 });
    });
  }
}

test('an encoded body of an allowed model is refused too: the gateway judges only what it can read', async (t) => {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-encoding': 'gzip', 'content-type': 'application/json', ...tag },
    body: zlib.gzipSync(Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [] }))),
  });
  t.is(res.status, 415, res.body);
  t.is(errorOf(res)?.code, 'unsupported_content_encoding');
  t.deepEqual(upstream.tagged(tag), []);
});

test('Content-Encoding: identity is no encoding and the request goes through', async (t) => {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await send(gw.url, key, {
    path: '/v1/chat/completions',
    headers: { 'content-encoding': 'identity', 'content-type': 'application/json', ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
  });
  t.is(res.status, 200, res.body);
  t.is(upstream.tagged(tag).length, 1);
});
