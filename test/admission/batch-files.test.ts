import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import { newTag, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, gatewayForFile, logIdOf, rowById, type RawResponse } from './support.js';

// Issue 14, finding 6: a file uploaded with purpose=batch could name any model on any line, and the
// batch then ran it. Every line is judged at upload; POST /v1/batches is forwarded only for an input
// file that passed that check for the same customer.

const POLICY = policy()
  .catchAll()
  .customer('batcher', { models: ['gpt-4o-mini'] })
  .customer('batcher-two', { models: ['gpt-4o-mini'] })
  .customer('other', { models: ['gpt-4o-mini'] })
  .yaml();

let upstream: MockUpstream;
let gw: Harness;
gatewayForFile(POLICY, (started) => ({ upstream, gw } = started));

const LINES = 10_000;

function batchFile(forbiddenAt: number | null): string {
  const lines: string[] = [];
  for (let i = 1; i <= LINES; i++) {
    const model = i === forbiddenAt ? 'gpt-4o' : 'gpt-4o-mini';
    lines.push(JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: `question ${i}` }] } }));
  }
  return `${lines.join('\n')}\n`;
}

async function asRaw(res: Response): Promise<RawResponse> {
  const headers: Record<string, string> = {};
  res.headers.forEach((value, name) => (headers[name] = value));
  return { status: res.status, headers, body: await res.text() };
}

async function uploadBatchFile(key: string, text: string, tag: Tag): Promise<RawResponse> {
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([text], { type: 'application/jsonl' }), 'batch.jsonl');
  return asRaw(await fetch(`${gw.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, ...tag }, body: form }));
}

async function createBatch(key: string, inputFileId: string, tag: Tag): Promise<RawResponse> {
  return asRaw(
    await fetch(`${gw.url}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...tag },
      body: JSON.stringify({ input_file_id: inputFileId, endpoint: '/v1/chat/completions', completion_window: '24h' }),
    }),
  );
}

test('a 10,000-line batch file with one forbidden model at line 5,000 is refused with 403 naming line 5000 and never forwarded', async (t) => {
  const { key } = gw.createKey('batcher');
  const tag = newTag();
  const res = await uploadBatchFile(key, batchFile(5000), tag);
  t.is(res.status, 403, res.body);
  const error = errorOf(res);
  t.is(error?.code, 'policy_blocked');
  t.regex(error?.message ?? '', /line 5000\b/);
  t.deepEqual(upstream.tagged(tag), [], 'the batch file reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { customer_id: 'batcher', operation: 'files', allowed: 0 });
});

test('an all-allowed batch file is forwarded, and then a batch over it is forwarded', async (t) => {
  const { key } = gw.createKey('batcher-two');
  // Only this test's upload reaches /v1/files upstream: the others' are refused before it.
  upstream.setStatus('/v1/files', 200, { id: 'file-batch-ok-1', object: 'file', bytes: 1, created_at: 0, filename: 'batch.jsonl', purpose: 'batch' });
  t.teardown(() => upstream.clearStatus('/v1/files'));
  const tag = newTag();
  const uploaded = await uploadBatchFile(key, batchFile(null), tag);
  t.is(uploaded.status, 200, uploaded.body);
  const [file] = upstream.tagged(tag);
  t.true(file?.body.includes(Buffer.from('"custom_id":"req-10000"')), 'the whole file was forwarded');

  const batch = await createBatch(key, 'file-batch-ok-1', tag);
  t.is(batch.status, 200, batch.body);
  t.deepEqual(upstream.tagged(tag).map((r) => r.path), ['/v1/files', '/v1/batches']);
  t.like(rowById(gw.dbPath, logIdOf(batch)), { operation: 'batches', allowed: 1 });

  // Another customer may not run a batch over a file only the uploader's customer passed.
  const { key: otherKey } = gw.createKey('other');
  const foreign = await createBatch(otherKey, 'file-batch-ok-1', tag);
  t.is(foreign.status, 403, foreign.body);
  t.is(errorOf(foreign)?.code, 'policy_blocked');
  t.is(upstream.tagged(tag).length, 2);
});

test('POST /v1/batches with an input file the gateway never checked is refused with 403 and never forwarded', async (t) => {
  const { key } = gw.createKey('batcher');
  const tag = newTag();
  const res = await createBatch(key, 'file-never-uploaded-here', tag);
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.deepEqual(upstream.tagged(tag), [], 'the batch reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'batches', allowed: 0 });
});
