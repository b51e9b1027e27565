import test from 'ava';
import type { Harness } from '../helpers/gateway-harness.js';
import type { MockUpstream } from '../helpers/mock-upstream.js';
import { errorOf, gatewayForFile, logIdOf, policyWith, rowById, type RawResponse } from './support.js';

// Issue 14, finding 6: a file uploaded with purpose=batch could name any model on any line, and the
// batch then ran it. Every line is judged at upload; POST /v1/batches is forwarded only for an input
// file that passed that check for the same customer.

const POLICY = policyWith(`  batcher:
    models: ["gpt-4o-mini"]
  batcher-two:
    models: ["gpt-4o-mini"]
  other:
    models: ["gpt-4o-mini"]
`);

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

async function uploadBatchFile(key: string, text: string): Promise<RawResponse> {
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([text], { type: 'application/jsonl' }), 'batch.jsonl');
  return asRaw(await fetch(`${gw.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form }));
}

async function createBatch(key: string, inputFileId: string): Promise<RawResponse> {
  return asRaw(
    await fetch(`${gw.url}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ input_file_id: inputFileId, endpoint: '/v1/chat/completions', completion_window: '24h' }),
    }),
  );
}

test.serial('a 10,000-line batch file with one forbidden model at line 5,000 is refused with 403 naming line 5000 and never forwarded', async (t) => {
  const { key } = gw.createKey('batcher');
  upstream.reset();
  const res = await uploadBatchFile(key, batchFile(5000));
  t.is(res.status, 403, res.body);
  const error = errorOf(res);
  t.is(error?.code, 'policy_blocked');
  t.regex(error?.message ?? '', /line 5000\b/);
  t.is(upstream.received.length, 0, 'the batch file reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { customer_id: 'batcher', operation: 'files', allowed: 0 });
});

test.serial('an all-allowed batch file is forwarded, and then a batch over it is forwarded', async (t) => {
  const { key } = gw.createKey('batcher-two');
  upstream.reset();
  upstream.setStatus('/v1/files', 200, { id: 'file-batch-ok-1', object: 'file', bytes: 1, created_at: 0, filename: 'batch.jsonl', purpose: 'batch' });
  try {
    const uploaded = await uploadBatchFile(key, batchFile(null));
    t.is(uploaded.status, 200, uploaded.body);
    t.is(upstream.received.length, 1);
    t.true(upstream.received[0]!.body.includes(Buffer.from('"custom_id":"req-10000"')), 'the whole file was forwarded');

    const batch = await createBatch(key, 'file-batch-ok-1');
    t.is(batch.status, 200, batch.body);
    t.is(upstream.received.length, 2);
    t.is(upstream.received[1]!.path, '/v1/batches');
    t.like(rowById(gw.dbPath, logIdOf(batch)), { operation: 'batches', allowed: 1 });

    // Another customer may not run a batch over a file only the uploader's customer passed.
    const { key: otherKey } = gw.createKey('other');
    const foreign = await createBatch(otherKey, 'file-batch-ok-1');
    t.is(foreign.status, 403, foreign.body);
    t.is(errorOf(foreign)?.code, 'policy_blocked');
    t.is(upstream.received.length, 2);
  } finally {
    upstream.reset();
  }
});

test.serial('POST /v1/batches with an input file the gateway never checked is refused with 403 and never forwarded', async (t) => {
  const { key } = gw.createKey('batcher');
  upstream.reset();
  const res = await createBatch(key, 'file-never-uploaded-here');
  t.is(res.status, 403, res.body);
  t.is(errorOf(res)?.code, 'policy_blocked');
  t.is(upstream.received.length, 0, 'the batch reached the provider');
  t.like(rowById(gw.dbPath, logIdOf(res)), { operation: 'batches', allowed: 0 });
});
